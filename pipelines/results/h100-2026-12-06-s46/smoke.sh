#!/bin/bash
# Session 46 GPU smoke: the audited pipelines and genomix generate's new checks on CUDA.
# .gpu/data held copies of shared/data/gue/prom/prom_core_tata, shared/data/variants/clinvar_chrMT_labeled_GRCh38_rCRS.tsv and
# shared/data/genomes/human_mtDNA_rCRS.fa (the GPU machine has no shared/); run as `bash smoke.sh` with $OUT set.
set -u
export PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/gpu.txt
S=.gpu/data
( time python pipelines/finetune_gue.py --model hyenadna-tiny-1k --gue $S/gue --tasks prom/prom_core_tata \
    --recipe quick --max-epochs 1 --train-rows 256 --accelerator gpu --quiet --out /tmp/gue ) > $OUT/finetune_gue.log 2>&1
echo "finetune_gue rc=$?" | tee -a $OUT/finetune_gue.log; tail -6 $OUT/finetune_gue.log
python - <<'PY' >> $OUT/finetune_gue.log 2>&1
import json; d = json.load(open("/tmp/gue/finetune_gue.json")); print(d["devices"], d["accelerator"], d["rows"][0]["test"])
PY
tail -1 $OUT/finetune_gue.log
( time python pipelines/eval_variant_scoring.py --model hyenadna-tiny-1k \
    --variants $S/variants/clinvar_chrMT_labeled_GRCh38_rCRS.tsv --reference $S/genomes/human_mtDNA_rCRS.fa \
    --contig-map MT=MT_human --window 64 --device cuda --quiet --out /tmp/eval ) > $OUT/eval.log 2>&1
echo "eval rc=$?" | tee -a $OUT/eval.log; tail -8 $OUT/eval.log
python -m genomix generate --model mamba-tiny-1k --prompt ACGTACGT --prompt TTGACCA --max-new-tokens 256 \
    --num-samples 2 --device cuda --quiet --out /tmp/gen/s.fa --overwrite > $OUT/generate.log 2>&1; echo "generate rc=$?" >> $OUT/generate.log
grep -c ">" /tmp/gen/s.fa >> $OUT/generate.log
python -m genomix generate --model mamba-tiny-1k --prompt ACGT --max-new-tokens 100000000000 --device cuda \
    --quiet --out /tmp/gen2/s.fa >> $OUT/generate.log 2>&1; echo "absurd rc=$? folder: $(ls -d /tmp/gen2 2>&1)" >> $OUT/generate.log
cat $OUT/generate.log
