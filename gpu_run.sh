export PYTHONPATH=. PYTHONUNBUFFERED=1
for L in 32768 1048576; do
timeout 240 ncu --clock-control none --profile-from-start off -k regex:"level_kernel" \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis_Chart --section MemoryWorkloadAnalysis_Tables --section SchedulerStats --section InstructionStats \
  --csv --page details python kernels/ncu_workloads.py fftconv-fwd --length $L --path cufft > $OUT/ncu_$L.csv 2> $OUT/ncu_$L.err
tail -2 $OUT/ncu_$L.err; wc -l $OUT/ncu_$L.csv
done
