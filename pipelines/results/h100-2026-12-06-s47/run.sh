#!/bin/bash
# Session 47 GPU run (.gpu/data held a copy of shared/data/gue/prom/prom_core_tata; run as `bash run.sh` from the repo root): the GPU test suite, then this session's training changes on CUDA (pretrain Ctrl-C saves the
# step in progress, --resume auto on a finished run, finetune's metrics.json seconds). Run with $OUT set.
set -u
export PYTHONPATH=. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/gpu.txt
S=.gpu/data
# 1. pretrain on CUDA, Ctrl-C sent to the whole process group (main process and dataloader workers)
PT="python -m genomix pretrain --recipe hyenadna-demo-gpu --max-steps 1200 --out /tmp/pt --quiet"
setsid $PT > $OUT/pt_interrupted.log 2>&1 &
PID=$!
sleep 40; kill -INT -- -$PID; wait $PID; echo "interrupted rc=$?" >> $OUT/pt_interrupted.log
python - >> $OUT/pt_interrupted.log 2>&1 <<'PY'
import torch; c = torch.load("/tmp/pt/checkpoints/last.ckpt", weights_only=True, map_location="cpu"); print("saved step", c["global_step"])
PY
tail -3 $OUT/pt_interrupted.log
( time $PT --resume auto ) > $OUT/pt_resumed.log 2>&1; echo "resumed rc=$?" >> $OUT/pt_resumed.log
python - >> $OUT/pt_resumed.log 2>&1 <<'PY'
import csv, glob
for f in sorted(glob.glob("/tmp/pt/logs/csv/version_*/metrics.csv")):
    steps = [int(r["step"]) for r in csv.DictReader(open(f)) if r.get("train/loss")]
    print(f, "train-loss rows", len(steps), "steps", steps[:1], "..", steps[-1:], "repeated", len(steps) - len(set(steps)))
PY
tail -8 $OUT/pt_resumed.log
ls -l --time-style=+%s /tmp/pt/model /tmp/pt/checkpoints > $OUT/pt_before_again.txt
$PT --resume auto > $OUT/pt_again.log 2>&1; echo "again rc=$?" >> $OUT/pt_again.log
ls -l --time-style=+%s /tmp/pt/model /tmp/pt/checkpoints > $OUT/pt_after_again.txt
cmp $OUT/pt_before_again.txt $OUT/pt_after_again.txt && echo "no file changed" >> $OUT/pt_again.log
cat $OUT/pt_again.log
# 2. GUE fine-tuning on one GPU: metrics.json records its seconds; a rerun reuses them
for run in first rerun; do
  python pipelines/finetune_gue.py --model hyenadna-tiny-1k --gue $S/gue --tasks prom/prom_core_tata --recipe quick \
      --max-epochs 2 --train-rows 2048 --accelerator gpu --quiet --out /tmp/gue > $OUT/finetune_gue_$run.log 2>&1
  echo "finetune_gue $run rc=$?" >> $OUT/finetune_gue_$run.log; tail -5 $OUT/finetune_gue_$run.log
done
python -c "import json; print(json.load(open('/tmp/gue/prom_prom_core_tata/metrics.json'))['seconds'])" | tee -a $OUT/finetune_gue_rerun.log
# 3. the GPU test suite
GENOMIX_TEST_GPU=1 timeout 300 python -m pytest -q tests -p no:cacheprovider --ignore=tests/test_notebooks.py -x > $OUT/gpu_pytest.log 2>&1
echo "gpu pytest rc=$?" >> $OUT/gpu_pytest.log; tail -3 $OUT/gpu_pytest.log
