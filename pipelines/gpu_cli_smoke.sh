#!/usr/bin/env bash
# Every long-running genomix command once on a GPU, end to end on real data, tiny models: a multi-file genome
# store, pretraining (eager, on two genomes with per-source weights, CUDA graphs, stopped by SIGTERM and
# resumed), embeddings, variant scoring (causal, Mamba, masked), sampling, beam search, fine-tuning and in-context
# prompts. Each step's status and time go to $OUT/smoke/summary.txt; the script exits 1 if any step failed.
#
#   OUT=/tmp/smoke DATA=../shared/data bash pipelines/gpu_cli_smoke.sh      # from the repository root
#
# DATA holds genomes/{human_mtDNA_rCRS,phage_lambda_NC_001416,sarscov2_MN908947}.fa,
# variants/clinvar_chrMT_labeled_GRCh38_rCRS.tsv and gue/prom/prom_core_tata (shared/data's layout).
set -u
case "${1:-}" in -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;; esac
: "${OUT:?set OUT to a results folder}"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu_cli_smoke.sh: needs a CUDA GPU, and torch sees none here; run it on a GPU machine" >&2; exit 2; }
D=${DATA:-../shared/data}; O=$OUT/smoke; mkdir -p "$O"; : > "$O/summary.txt"
failed=0
step() {  # step NAME COMMAND...: run it (4 minutes at most), log it, record its status
  local name=$1; shift; local t=$SECONDS
  timeout 240 "$@" > "$O/$name.log" 2>&1
  local rc=$?
  [ "$rc" -eq 0 ] || failed=1
  echo "$name rc=$rc $((SECONDS - t))s" | tee -a "$O/summary.txt"
}
python - "$D/variants/clinvar_chrMT_labeled_GRCh38_rCRS.tsv" > "$O/clinvar.vcf" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
for i, r in enumerate(rows):
    print(f"{r['chrom']}\t{r['pos']}\tv{i}\t{r['ref']}\t{r['alt']}\t.\t.\t.")
PY
step prepare python -m genomix genome prepare --genome $D/genomes/phage_lambda_NC_001416.fa $D/genomes/sarscov2_MN908947.fa --out $O/corpus.h5 --quiet
step pretrain python -m genomix pretrain --genome $O/corpus.h5 --recipe hyenadna-demo-gpu --max-steps 20 --out $O/pre --quiet
python - "$O/weighted.yaml" "$D/genomes" <<'PY'
import sys, yaml  # the GPU demo recipe on two genomes, the small one drawn three times as often as its length says
recipe = yaml.safe_load(open("configs/pretrain/hyenadna-demo-gpu.yaml"))
genomes = sys.argv[2]
recipe["data"].update(genome=[f"{genomes}/phage_lambda_NC_001416.fa", f"{genomes}/sarscov2_MN908947.fa"],
                      source_weights={"phage_lambda_NC_001416": 1, "sarscov2_MN908947": 3})
yaml.safe_dump(recipe, open(sys.argv[1], "w"))
PY
step pretrain_weighted python -m genomix pretrain --recipe $O/weighted.yaml --max-steps 20 --cache-dir $O/cache --out $O/pre_w --quiet
step pretrain_graphs python -m genomix pretrain --genome $O/corpus.h5 --recipe hyenadna-demo-gpu --max-steps 20 --cuda-graphs --out $O/pre_g --quiet
# a batch scheduler's time limit: SIGTERM mid-run saves the step in progress (exit 130), and the run resumes from it
step pretrain_sigterm bash -c '
  timeout --preserve-status -s TERM 45 python -m genomix pretrain --genome "$1/corpus.h5" --recipe hyenadna-demo-gpu --max-steps 100000 \
    --out "$1/pre_t" --quiet; rc=$?; [ "$rc" -eq 130 ] || { echo "SIGTERM: exit $rc, not 130"; exit 1; }
  saved=$(python -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=True)[\"global_step\"])" \
    "$1/pre_t/checkpoints/last.ckpt") || exit 1
  echo "SIGTERM saved step $saved"
  python -m genomix pretrain --resume auto --out "$1/pre_t" --max-steps $((saved + 5)) --quiet' _ "$O"
step embed python -m genomix embed --model $O/pre/model --fasta $D/genomes/sarscov2_MN908947.fa --out $O/emb.h5 --device cuda --quiet
step embed_mamba python -m genomix embed --model mamba-tiny-1k --fasta $D/genomes/phage_lambda_NC_001416.fa --pooling none --out $O/emb_m.h5 --device cuda --quiet
step score_causal python -m genomix score-variants --model $O/pre/model --vcf $O/clinvar.vcf --reference $D/genomes/human_mtDNA_rCRS.fa --contig-map MT=MT_human --window 512 --out $O/s_causal.tsv --device cuda --quiet
step score_mamba python -m genomix score-variants --model mamba-tiny-1k --vcf $O/clinvar.vcf --reference $D/genomes/human_mtDNA_rCRS.fa --contig-map MT=MT_human --window 4096 --out $O/s_mamba.tsv --device cuda --quiet
step score_masked python -m genomix score-variants --model caduceus-ps-1k-d118 --vcf $O/clinvar.vcf --reference $D/genomes/human_mtDNA_rCRS.fa --contig-map MT=MT_human --window 512 --out $O/s_masked.tsv --device cuda --quiet
step generate python -m genomix generate --model $O/pre/model --prompt ACGTACGTAAGG --prompt TTGACA --max-new-tokens 300 --num-samples 2 --top-p 0.9 --out $O/gen.fa --device cuda --quiet
step beams python -m genomix generate --model mamba-tiny-1k --prompt ACGTACGTAAGG --max-new-tokens 64 --num-beams 4 --num-samples 2 --out $O/beams.fa --device cuda --quiet
step finetune python -m genomix finetune --model $O/pre/model --task $D/gue/prom/prom_core_tata --recipe quick --max-epochs 1 --train-rows 512 --out $O/ft --quiet
step icl python -m genomix icl --model $O/pre/model --task $D/gue/prom/prom_core_tata --recipe quick --out $O/icl --quiet
python - >> "$O/summary.txt" 2>&1 <<'PY'
import h5py, os
O = os.environ["OUT"] + "/smoke"
for f in ("emb.h5", "emb_m.h5"):
    with h5py.File(f"{O}/{f}") as h: print(f, {k: h[k].shape for k in h if hasattr(h[k], "shape")})
for f in ("s_causal.tsv", "s_mamba.tsv", "s_masked.tsv"):
    rows = [l for l in open(f"{O}/{f}") if not l.startswith("#")][1:]
    print(f, len(rows), rows[0].split("\t")[5:7])
print(open(f"{O}/gen.fa").read()[:300])
print(open(f"{O}/ft/metrics.json").read()[:400])
PY
cat "$O/summary.txt"
exit "$failed"
