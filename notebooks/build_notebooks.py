"""Write the tutorial notebooks from their cell sources (run: ``python notebooks/build_notebooks.py``).

The notebooks are stored without outputs; ``tests/test_notebooks.py`` executes each one on tiny inputs,
so a tutorial that stops working fails CI. Editing the cells here and re-running keeps the .ipynb files
reviewable as plain Python.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

QUICK_TOUR = [
    ("markdown", """# genomix quick tour

From a FASTA file to a genome store, windows, a HyenaDNA model, embeddings and a checkpoint that
`transformers` loads without `trust_remote_code`. Everything runs on CPU in well under a minute on the
human chr1 region bundled with genomix (`--genome demo`)."""),
    ("code", """import tempfile
from pathlib import Path

import torch
import genomix
from genomix.genome import prepare_genome, open_store, WindowDataset

work = Path(tempfile.mkdtemp(prefix="genomix-tour-"))
store_path = prepare_genome("demo", out=work / "demo.h5", quiet=True)
store = open_store(store_path)
store, store.lengths"""),
    ("markdown", """## Random access and tokens
`fetch` returns HyenaDNA token ids for a 0-based half-open interval; `strand="-"` gives the reverse
complement. `decode` turns ids back into bases; `as_bytes=True` gives the stored letters, soft-masking included."""),
    ("code", """from genomix.tokenizer import decode, encode, reverse_complement

contig = store.contigs[0]
plus = store.fetch(contig, 1_000_000, 1_000_032)
minus = store.fetch(contig, 1_000_000, 1_000_032, strand="-")
print(decode(plus))
print(decode(minus))
assert (minus == reverse_complement(plus)).all()
assert (encode(decode(plus)) == plus).all()"""),
    ("markdown", """## Windows for training
A `WindowDataset` draws windows from the store's splits, deterministically per seed and epoch, with
reverse-complement augmentation and an N-fraction filter."""),
    ("code", """windows = WindowDataset(store, length=1024, split="train", samples_per_epoch=8,
                        rc_probability=0.5, max_n_fraction=0.1, seed=0)
sample = windows[0]
{key: tuple(value.shape) for key, value in sample.items()}"""),
    ("markdown", """## A model, its outputs and embeddings
`genomix.models.build` makes a named size with fresh weights (`genomix.from_pretrained` loads released
checkpoints in any supported layout)."""),
    ("code", """torch.manual_seed(0)
model = genomix.models.build("hyenadna-tiny-1k").eval()
input_ids = torch.stack([windows[i]["input_ids"] for i in range(2)])
with torch.no_grad():
    out = model(input_ids, output_hidden_states=True)
print("logits", tuple(out.logits.shape), "last hidden", tuple(out.hidden_states[-1].shape))
embedding = out.hidden_states[-1].mean(dim=1)
embedding.shape"""),
    ("markdown", """## Save, and load with plain transformers"""),
    ("code", """from transformers import AutoModelForCausalLM

tok = genomix.Tokenizer()
model.save_pretrained(work / "my-model")
tok.save_pretrained(work / "my-model")
reloaded = AutoModelForCausalLM.from_pretrained(work / "my-model").eval()
with torch.no_grad():
    assert torch.allclose(reloaded(input_ids).logits, out.logits, atol=1e-5)
type(reloaded).__name__"""),
    ("markdown", """## Generate and score with Mamba
A Mamba LM reads a prompt in one parallel pass and then generates one recurrent step per token (a CUDA
graph replay on a GPU). `token_log_likelihoods` scores every base given those before it; Mamba reads
sequences longer than its `max_seq_len` in pieces that carry its state, so here a 3,000-base region
goes through a 1,024-token model in three exact pieces. From the shell, `genomix generate --model M --fasta
prompts.fa --max-new-tokens N --num-samples K --top-p 0.9 --out samples.fa` writes sampled continuations
as FASTA, each with its log-likelihood under the model (`return_log_likelihood=True` below), to rank them."""),
    ("code", """from genomix.models.generation import generate
from genomix.models.scoring import token_log_likelihoods

torch.manual_seed(0)
mamba = genomix.models.build("mamba-tiny-1k", task="causal-lm").eval()
prompt = store.fetch(contig, 1_000_000, 1_000_256)[None]
continued, log_likelihood = generate(mamba, torch.as_tensor(prompt), 32, temperature=0.8, top_p=0.9,
                                     return_log_likelihood=True)
print(decode(continued[0, -32:].numpy()), "log-likelihood", float(log_likelihood[0]))
region = torch.as_tensor(store.fetch(contig, 1_000_000, 1_003_000))[None]
scores = token_log_likelihoods(mamba, region)
print(tuple(scores.shape), "mean log-likelihood per base", float(scores.mean()))"""),
]

FINETUNING = [
    ("markdown", """# Fine-tuning on a GUE task

`genomix.tasks` reads labelled sequences in the layouts benchmarks ship (GUE's `train/dev/test.csv`,
GenomicBenchmarks' class folders, your own CSV/TSV with `sequence,label` columns), fine-tunes a
classification head on a pretrained backbone (or a named size from scratch), selects the best epoch on
dev and reports on test. `genomix finetune --model M --task DIR --out OUT` is the same call from a shell.

Set `TASK` to a GUE task folder. The default looks for the GUE copy beside a genomix checkout; this
tutorial keeps the training tiny (the first 512 training rows, 2 epochs): the run takes about a minute on a
CPU, most of it predicting the dev and test splits (5,307 rows each). A tiny model trained from scratch on
512 rows learns next to nothing (its test MCC is near 0): this shows the mechanics. For results worth
reading, pass a pretrained checkpoint and the `gue` recipe."""),
    ("code", """import os
import tempfile
from pathlib import Path

import genomix
from genomix.tasks import finetune, load_finetune_recipe, load_task

default = Path(genomix.__file__).resolve().parents[2] / "shared" / "data" / "gue" / "prom" / "prom_core_notata"
TASK = Path(os.environ.get("GENOMIX_TUTORIAL_TASK", default))
task = load_task(TASK)
print(task.name, task.label_names, {split: len(data) for split, data in task.splits.items()})"""),
    ("markdown", """## A recipe, then the run
Recipes are YAML (`configs/finetune/`: `gue`, `genomic-benchmarks`, `quick`); keyword arguments
override top-level fields. With a pretrained checkpoint, pass its folder or Hub id as the model: its
backbone is kept and a fresh head is trained."""),
    ("code", """recipe = load_finetune_recipe("quick", train_rows=512, max_epochs=2, batch_size=64)
out = Path(tempfile.mkdtemp(prefix="genomix-finetune-"))
result = finetune("hyenadna-tiny-1k", task, out, recipe, accelerator="cpu", quiet=True)
print("best epoch", result.best_epoch)
result.metrics["test"]"""),
    ("markdown", """## What the run left
Predictions of the best epoch per split (with class probabilities), `metrics.json`, and the model,
which `genomix.from_pretrained` (or `transformers`' `AutoModelForSequenceClassification`) loads."""),
    ("code", """print((out / "predictions" / "test.tsv").read_text().splitlines()[:3])
model = genomix.from_pretrained(out / "model")
type(model).__name__, model.config.id2label"""),
]


IN_CONTEXT = [
    ("markdown", """# In-context classification

A causal DNA language model can classify without changing its weights. `genomix.tasks.icl` writes each
query as one token row: optional soft-prompt slots, a few labelled demonstrations from the training split,
then the query. The label of a demonstration is written as one base (class 0 = `A`, class 1 = `C`, ...),
and the model's next-token probabilities of those bases after the query are the class scores.
`genomix icl --model M --task DIR --out OUT` is the same from a shell.

This tutorial uses a tiny model with random weights, so its scores are at chance: pass a pretrained
causal-LM checkpoint (a folder or Hub id) to `run_icl` for real use. Set `TASK` to a GUE task folder
(`genomix tasks download gue` fetches them)."""),
    ("code", """import os
import tempfile
from pathlib import Path

import genomix
from genomix.tasks import known_suites, load_task
from genomix.tasks.icl import PromptBuilder, load_icl_recipe, run_icl
from genomix.tokenizer import decode

default = Path(genomix.__file__).resolve().parents[2] / "shared" / "data" / "gue" / "prom" / "prom_core_tata"
TASK = Path(os.environ.get("GENOMIX_TUTORIAL_TASK", default))
task = load_task(TASK)
print(task.name, task.label_names, {split: len(data) for split, data in task.splits.items()})
print("downloadable suites:", {name: len(suite.tasks) for name, suite in known_suites().items()})"""),
    ("markdown", """## What a prompt looks like
One shot per class, no soft prompt: two demonstrations (`sequence [SEP] label [SEP]`), then the query and
`[SEP]`. The demonstrations are drawn with a generator seeded by the row, so a query always sees the same."""),
    ("code", """recipe = load_icl_recipe("kshot", shots=1)
builder = PromptBuilder(task.split("train"), task.num_labels, recipe)
row = builder.row(task.split("test").ids[0], "test", 0)
print(len(row), "tokens")
text = decode(row, skip_special_tokens=False)  # [SEP] and the label bases shown where they stand
print(text[:120], "...", text[-40:])"""),
    ("markdown", """## k-shot prompting and a soft prompt
`run_icl` scores dev and test and writes `metrics.json` and per-row predictions. The `quick` recipe adds an
8-vector soft prompt tuned for 20 steps with the model frozen (`soft-prompt` is the full recipe: 64
vectors, 1,000 steps); a run that stops part way continues with `resume=True`."""),
    ("code", """out = Path(tempfile.mkdtemp(prefix="genomix-icl-"))
kshot = run_icl("hyenadna-tiny-1k", task, out / "kshot", load_icl_recipe("kshot", shots=1, test_rows=64),
                device="cpu", quiet=True)
soft = run_icl("hyenadna-tiny-1k", task, out / "soft", load_icl_recipe("quick"), device="cpu", quiet=True)
print("k-shot test", kshot["metrics"]["test"])
print("soft prompt test", soft["metrics"]["test"], "loss", soft["soft_prompt_losses"][0], "->", soft["soft_prompt_losses"][-1])"""),
]

VARIANT_SCORING = [
    ("markdown", """# Scoring variants with a DNA language model

For every ALT allele of a VCF, `genomix.variants.score_variants` reads a reference window around the variant
twice, once with REF and once with ALT, and writes the log-likelihood ratio
`llr = log p(ALT window) - log p(REF window)` under a causal model (HyenaDNA, Mamba, causal M2). A variant
the model finds unlikely gets a negative score. Masked models (Caduceus, M2-BERT) give the masked marginal
instead. `genomix score-variants --model M --vcf calls.vcf.gz --reference genome.h5 --out scores.tsv` is the
same from a shell, with `--resume` after an interrupted run and `--region` for indexed VCFs.

The data are real: ClinVar's mitochondrial variants labelled benign (0) or pathogenic (1) and the rCRS
mitochondrial genome. The models here are tiny with random weights, so the scores are at chance: pass a
pretrained checkpoint (a folder or Hub id) to `genomix.from_pretrained` for real use. Set `DATA` to the
folder holding `variants/` and `genomes/`."""),
    ("code", """import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import genomix

default = Path(genomix.__file__).resolve().parents[2] / "shared" / "data"
DATA = Path(os.environ.get("GENOMIX_TUTORIAL_DATA", default))
with open(DATA / "variants" / "clinvar_chrMT_labeled_GRCh38_rCRS.tsv") as fh:
    labelled = list(csv.DictReader(fh, delimiter="\\t"))
print(len(labelled), "variants,", sum(r["label"] == "1" for r in labelled), "pathogenic")
labelled[0]"""),
    ("markdown", """## A VCF and its reference
The variants go into a plain VCF (gzip, bgzip and BCF read the same way). ClinVar calls the mitochondrion
`MT`, the FASTA calls it `MT_human`: the contig map says they are the same (`--contig-map MT=MT_human`).
A genome store made by `genomix genome prepare` works as the reference too."""),
    ("code", """from genomix.variants import Reference, read_vcf, score_variants

work = Path(tempfile.mkdtemp(prefix="genomix-variants-"))
vcf = work / "clinvar_mt.vcf"
with open(vcf, "w") as fh:
    fh.write("##fileformat=VCFv4.2\\n#CHROM\\tPOS\\tID\\tREF\\tALT\\tQUAL\\tFILTER\\tINFO\\n")
    for i, r in enumerate(labelled):
        fh.write(f"{r['chrom']}\\t{r['pos']}\\tv{i}\\t{r['ref']}\\t{r['alt']}\\t.\\t.\\t.\\n")
reference = Reference(DATA / "genomes" / "human_mtDNA_rCRS.fa", contig_map={"MT": "MT_human"})
first = next(read_vcf(vcf))
contig = reference.resolve(first.chrom)  # MT -> MT_human
print(first)
print("reference around it:", reference.text(contig, first.pos - 6, first.pos + 5), "(REF in the middle)")"""),
    ("markdown", """## Scores under a causal model
Each row of the output TSV has the variant, its status (`scored`, or why not: `ref_mismatch` with
`on_ref_mismatch="skip"`, `symbolic`, ...), the ratio and both windows' log-likelihoods. Rows are kept as they
finish, so an interrupted run continues with `resume=True`."""),
    ("code", """torch.manual_seed(0)
causal = genomix.models.build("hyenadna-tiny-1k").eval()
counts = score_variants(causal, read_vcf(vcf), reference, work / "causal.tsv", vcf=vcf, window=256,
                        device="cpu", quiet=True)
print(counts)

def read_scores(path):
    with open(path) as fh:
        return list(csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\\t"))

rows = read_scores(work / "causal.tsv")
rows[0]"""),
    ("markdown", """## How well do the scores separate the labels?
A lower (more negative) ratio should mean more likely pathogenic, so `-llr` is the pathogenicity score. The
AUROC is the chance that a random pathogenic variant scores above a random benign one (ties count half);
0.5 is chance, which is what random weights give. `pipelines/eval_variant_scoring.py` does the same for any
model, with a table by variant class."""),
    ("code", """def auroc(scores, labels):
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))

label_of = {(r["chrom"], r["pos"], r["ref"], r["alt"]): int(r["label"]) for r in labelled}
scored = [r for r in rows if r["status"] == "scored"]
labels = [label_of[(r["chrom"], r["pos"], r["ref"], r["alt"])] for r in scored]
print(len(scored), "scored; AUROC of -llr:", round(auroc([-float(r["llr"]) for r in scored], labels), 3))"""),
    ("markdown", """## A masked model
Under Caduceus the REF bases are masked in the reference window and the score is log p(ALT) - log p(REF)
at those positions: defined for substitutions, so indels get the status `indel`. The reverse-complement
equivariant (`ps`) variant gives the same score on either strand."""),
    ("code", """torch.manual_seed(0)
masked = genomix.models.build("caduceus-ps-1k-d118", task="masked-lm").eval()
counts = score_variants(masked, read_vcf(vcf), reference, work / "masked.tsv", vcf=vcf, window=256,
                        device="cpu", quiet=True)
print(counts)
read_scores(work / "masked.tsv")[0]"""),
]


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook (nbformat 4, Python 3 kernel) with the given markdown/code cells and no outputs.

    Cell ids are numbered (``cell-0``, ``cell-1``, ...) rather than nbformat's random ones, so that running
    this script again rewrites the stored notebooks byte for byte and a diff shows only edited cells."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    makers = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    notebook.cells = [makers[kind](source, id=f"cell-{i}") for i, (kind, source) in enumerate(cells)]
    return notebook


NOTEBOOKS = {"quick_tour.ipynb": QUICK_TOUR, "finetuning.ipynb": FINETUNING, "in_context.ipynb": IN_CONTEXT,
             "variant_scoring.ipynb": VARIANT_SCORING}

if __name__ == "__main__":
    for file_name, cells in NOTEBOOKS.items():
        nbformat.write(build(cells), HERE / file_name)
        print("wrote", HERE / file_name)
