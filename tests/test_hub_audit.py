"""Checkpoints on disk as users have them, broken the ways files get broken: every failure of
``from_pretrained``, ``genomix convert`` and the class loaders is one GenomixError naming the file and what to
do; sharded checkpoints load; converts never destroy what they did not write and reproduce the reference
outputs in every direction."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_hub_formats import hf_config

import genomix
from genomix.cli import main
from genomix.errors import CheckpointError, DownloadError, GenomixError
from genomix.hub import from_pretrained, save_native
from genomix.hub.integrity import MANIFEST

FIXTURES = {"hyena": "hyenadna-released-layout", "mamba": "mamba-lm", "cadps": "caduceus-ps", "cadph": "caduceus-ph"}
#: The longest short case of each fixture's expected.npz.
CASES = {"hyena": "L17", "hf": "L17", "native": "L17", "mamba": "L33", "cadps": "L32", "cadph": "L32"}
DROP = object()  # edit_config: remove the field


@pytest.fixture(scope="module")
def layouts(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One directory per layout a user downloads: HyenaDNA original, -hf, mamba_ssm, Caduceus PS/PH, native."""
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for name, fixture in FIXTURES.items():
        out[name] = shutil.copytree(shared_dir / "fixtures" / fixture, root / name,
                                    ignore=shutil.ignore_patterns("expected.npz"))
    original = shared_dir / "fixtures" / FIXTURES["hyena"]
    state = torch.load(original / "weights.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    hf = root / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps(hf_config(original)))
    renamed = {k.removeprefix("model.").replace(".mixer.layer.", ".mixer.").replace(".mlp.layer.", ".mlp."): v
               for k, v in state.items()}
    torch.save({f"hyena.{k}" if k.startswith("backbone.") else k: v for k, v in renamed.items()},
               hf / "pytorch_model.bin")
    out["hf"] = hf
    out["native"] = save_native(from_pretrained(out["hyena"]), root / "native")
    # as saved by other code: the edits below meet the checks they test, not the weights' recorded hashes, which
    # refuse any edit (tests/test_weights_integrity.py)
    (out["native"] / MANIFEST).unlink()
    return out


def expected_of(shared_dir: Path, layout: str) -> dict[str, np.ndarray]:
    fixture = FIXTURES.get(layout, FIXTURES["hyena"])  # -hf and native are made from the HyenaDNA fixture
    return dict(np.load(shared_dir / "fixtures" / fixture / "expected.npz"))


def assert_reference_logits(model: Any, expected: dict[str, np.ndarray], case: str) -> None:
    want = expected[f"{case}_logits"]
    with torch.no_grad():
        got = model(torch.from_numpy(expected[f"{case}_input_ids"])).logits[..., : want.shape[-1]].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def weights_of(d: Path) -> Path:
    return next(d / n for n in ("model.safetensors", "pytorch_model.bin", "weights.ckpt") if (d / n).exists())


def edit_config(**changes: Any) -> Callable[[Path], None]:
    """A mutation setting (or, with DROP, removing) config.json fields; dotted names reach nested blocks."""
    def apply(d: Path) -> None:
        config = json.loads((d / "config.json").read_text())
        for dotted, value in changes.items():
            *outer, key = dotted.split(".")
            block = config
            for name in outer:
                block = block[name]
            block.pop(key) if value is DROP else block.__setitem__(key, value)
        (d / "config.json").write_text(json.dumps(config))
    return apply


def edit_weights(change: Callable[[dict[str, torch.Tensor]], object]) -> Callable[[Path], None]:
    """A mutation of the state dict in place, in whatever file format the layout uses."""
    def apply(d: Path) -> None:
        path = weights_of(d)
        if path.suffix == ".safetensors":
            state = load_file(path)
            change(state)
            save_file(state, path)
            return
        data = torch.load(path, map_location="cpu", weights_only=True)
        change(data.get("state_dict", data))
        torch.save(data, path)
    return apply


def first(state: dict[str, torch.Tensor], part: str = "layers.1.") -> str:
    return sorted(k for k in state if part in k and state[k].is_floating_point() and state[k].dim() == 2)[0]


def shard(d: Path, drop_second: bool = False) -> None:
    """Split the single weights file into two shards and an index, as transformers saves large checkpoints."""
    single = weights_of(d)
    ext = single.suffix
    state = load_file(single) if ext == ".safetensors" else torch.load(single, weights_only=True)
    single.unlink()
    keys = sorted(state)
    stem = single.stem
    names = [f"{stem}-0000{i}-of-00002{ext}" for i in (1, 2)]
    parts = {names[0]: keys[: len(keys) // 2], names[1]: keys[len(keys) // 2:]}
    for name, part in parts.items():
        chunk = {k: state[k].contiguous() for k in part}
        save_file(chunk, d / name) if ext == ".safetensors" else torch.save(chunk, d / name)
    weight_map = {k: name for name, part in parts.items() for k in part}
    (d / f"{single.name}.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if drop_second:
        (d / names[1]).unlink()


class Foreign:
    """A class that is no tensor; pickled into a weights file it must come out as a refusal, never as a weight."""


def refuse_code(d: Path) -> None:
    """A pytorch_model.bin whose unpickling would delete a file (module ``posix``, which torch never allows)."""
    canary = d / "canary"
    canary.write_text("must survive")
    path = weights_of(d)
    data = torch.load(path, weights_only=True)
    data["evil"] = _Deleter(str(canary))
    torch.save(data, path)


class _Deleter:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.remove, (self.path,))


BROKEN = [
    ("hyena", "truncated", lambda d: (d / "weights.ckpt").write_bytes((d / "weights.ckpt").read_bytes()[:5000]),
     r"weights\.ckpt: cannot read torch checkpoint .*truncated or corrupt"),
    ("native", "truncated", lambda d: (d / "model.safetensors").write_bytes(b"\x10\x00" + bytes(100)),
     r"model\.safetensors: cannot read safetensors .*truncated or corrupt"),
    ("mamba", "garbage", lambda d: (d / "pytorch_model.bin").write_bytes(bytes(range(256)) * 16),
     r"pytorch_model\.bin: cannot read torch checkpoint"),
    ("hf", "code in the pickle", refuse_code, r"pytorch_model\.bin: refused: unpickling it would call posix\.remove"),
    ("mamba", "an object in the pickle", edit_weights(lambda s: s.__setitem__("extra", Foreign())),
     r"pytorch_model\.bin: .*not tensors: 'extra' \(.*Foreign\)"),
    ("native", "no config.json", lambda d: (d / "config.json").unlink(), r"no config\.json .*copy the config\.json"),
    ("cadps", "config.json a folder", lambda d: ((d / "config.json").unlink(), (d / "config.json").mkdir()),
     r"config\.json: cannot be read"),
    ("hf", "no weights", lambda d: (d / "pytorch_model.bin").unlink(), r"config\.json is here but no weights"),
    ("hyena", "no weights", lambda d: (d / "weights.ckpt").unlink(), r"weights\.ckpt: weights file missing"),
    ("native", "wrong type", edit_config(d_model="256"), r"config\.json: field\(s\) of the wrong type: d_model must be an integer, got '256'"),
    ("mamba", "wrong nested type", edit_config(**{"ssm_cfg.d_state": "16"}), r"ssm_cfg\.d_state must be an integer, got '16'"),
    ("cadps", "bool as text", edit_config(rcps="yes"), r"rcps must be true or false, got 'yes'"),
    ("cadps", "complement map a number", edit_config(complement_map=5), r"complement_map must be a list or a mapping, got 5"),
    ("mamba", "block not an object", edit_config(ssm_cfg=[1]), r"'ssm_cfg' must be a JSON object"),
    ("hyena", "required field missing", edit_config(**{"layer.l_max": DROP}), r"config\.json: lacks layer\.l_max"),
    ("hyena", "value builds no model", edit_config(d_model=0), r"config\.json: not a usable HyenaConfig: .*d_model must "
                                                               r"be a whole number >= 1, got 0"),
    ("native", "unknown genomix type", edit_config(model_type="genomix-foo"), r"unknown model_type 'genomix-foo'"),
    ("hf", "foreign model_type", edit_config(model_type="bert"), r"model_type 'bert', in no layout genomix reads"),
    ("native", "shape mismatch", edit_weights(lambda s: s.__setitem__(first(s), torch.zeros(3, 3))),
     r"shape mismatch.*checkpoint \(3, 3\)"),
    ("cadps", "extra tensor", edit_weights(lambda s: s.__setitem__("caduceus.backbone.bogus", torch.zeros(2))),
     r"1 unexpected key\(s\): backbone\.bogus"),
    ("mamba", "missing tensor", edit_weights(lambda s: s.pop(first(s))), r"1 missing key\(s\): backbone\.layers\.1\."),
    ("hyena", "integer weights", edit_weights(lambda s: s.__setitem__(first(s), s[first(s)].long())),
     r"dtype mismatch.*torch\.int64 vs model torch\.float32"),
    ("native", "NaN weights", edit_weights(lambda s: s[first(s)].view(-1).__setitem__(0, float("nan"))),
     r"1 tensor\(s\) hold NaN or infinite values"),
    ("native", "missing shard", lambda d: shard(d, drop_second=True),
     r"model\.safetensors\.index\.json: 1 of 2 shard\(s\) missing \(model-00002-of-00002\.safetensors\)"),
]


@pytest.mark.parametrize("layout, what, mutate, message", BROKEN, ids=[f"{b[0]}-{b[1]}" for b in BROKEN])
def test_a_broken_checkpoint_is_one_clear_error_naming_the_file(layouts, tmp_path, layout, what, mutate, message):
    broken = shutil.copytree(layouts[layout], tmp_path / layout)
    mutate(broken)
    with pytest.raises(CheckpointError, match=message) as err:
        from_pretrained(broken)
    assert str(broken) in str(err.value)
    if what == "code in the pickle":
        assert (broken / "canary").is_file()


def test_a_file_is_no_checkpoint_directory(layouts):
    with pytest.raises(CheckpointError, match=r"model\.safetensors: is a file; pass the checkpoint's directory"):
        from_pretrained(layouts["native"] / "model.safetensors")


@pytest.mark.parametrize("layout", ["native", "mamba"])
def test_sharded_checkpoints_load_to_the_reference_outputs(layouts, shared_dir, tmp_path, layout):
    sharded = shutil.copytree(layouts[layout], tmp_path / layout)
    shard(sharded)
    assert_reference_logits(from_pretrained(sharded), expected_of(shared_dir, layout), CASES[layout])


def test_a_shard_holding_a_tensor_its_index_places_elsewhere_is_refused(layouts, tmp_path):
    """A stale copy of a tensor in the wrong shard replaced the right one whenever its shard was read later."""
    sharded = shutil.copytree(layouts["mamba"], tmp_path / "mamba")
    shard(sharded)
    weight_map = json.loads((sharded / "pytorch_model.bin.index.json").read_text())["weight_map"]
    first, second = sorted(set(weight_map.values()))
    moved = next(key for key, where in weight_map.items() if where == first)
    stale = torch.load(sharded / second, weights_only=True)
    stale[moved] = torch.zeros_like(torch.load(sharded / first, weights_only=True)[moved])
    torch.save(stale, sharded / second)
    with pytest.raises(CheckpointError, match=rf"{second}: holds 1 tensor\(s\) that pytorch_model\.bin\.index\.json "
                                              rf"places in another shard \({re.escape(moved)}\)"):
        from_pretrained(sharded)


@pytest.mark.parametrize("layout, field", [("hf", "activation_freq"), ("hyena", "layer.w")])
def test_fields_a_config_leaves_out_take_the_reference_defaults(layouts, tmp_path, layout, field):
    """HyenaDNA's code uses a sine frequency of 1 where a config gives none; genomix's own default is 10."""
    copy = shutil.copytree(layouts[layout], tmp_path / layout)
    edit_config(**{field: DROP})(copy)
    assert from_pretrained(copy).config.activation_freq == 1.0


@pytest.mark.parametrize("layout", sorted(CASES))
def test_convert_reproduces_the_reference_outputs_from_every_layout(layouts, shared_dir, tmp_path, capsys, layout):
    assert main(["convert", str(layouts[layout]), str(tmp_path / "out"), "--quiet"]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"].startswith("genomix-")
    assert_reference_logits(from_pretrained(tmp_path / "out"), expected_of(shared_dir, layout), CASES[layout])


def notes_folder(tmp: Path) -> Path:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "a.txt").write_text("mine")
    return tmp / "notes"


def a_file(tmp: Path) -> Path:
    (tmp / "f").write_text("mine")
    return tmp / "f"


#: Where a convert is pointed (given the source and the test's folder), and what it must say instead of writing.
DESTINATIONS: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "its own source": (lambda src, tmp: src, r"holds a hyenadna checkpoint .*only an earlier genomix checkpoint"),
    "another checkpoint": (lambda src, tmp: src.parent / "mamba", r"holds a mamba_ssm checkpoint"),
    "a folder of notes": (lambda src, tmp: notes_folder(tmp), r"holds files genomix did not write \(a\.txt\)"),
    "a file": (lambda src, tmp: a_file(tmp), r"exists and is a file"),
    "a path under a file": (lambda src, tmp: a_file(tmp) / "sub",
                            r"cannot create the output folder .*f is a file, not a folder"),
}


@pytest.mark.parametrize("where", sorted(DESTINATIONS))
def test_convert_refuses_a_destination_it_would_destroy(layouts, tmp_path, capsys, where):
    source = shutil.copytree(layouts["hyena"], tmp_path / "src" / "hyena")
    shutil.copytree(layouts["mamba"], tmp_path / "src" / "mamba")
    make_dst, message = DESTINATIONS[where]
    dst = make_dst(source, tmp_path)
    before = sorted((p.relative_to(tmp_path), p.read_bytes() if p.is_file() else b"") for p in tmp_path.rglob("*"))
    assert main(["convert", str(source), str(dst), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genomix convert: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    after = sorted((p.relative_to(tmp_path), p.read_bytes() if p.is_file() else b"") for p in tmp_path.rglob("*"))
    assert after == before  # nothing written, nothing removed


def test_an_interrupted_convert_keeps_the_earlier_checkpoint_and_leaves_no_temporary(layouts, tmp_path, monkeypatch):
    from genomix.tokenizer import Tokenizer

    dst = tmp_path / "out"
    genomix.hub.convert(layouts["mamba"], dst)

    def interrupted(self, *args, **kwargs):  # the weights are written, the tokenizer is not
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Tokenizer, "save_pretrained", interrupted)
        with pytest.raises(KeyboardInterrupt):
            genomix.hub.convert(layouts["hyena"], dst, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert type(from_pretrained(dst)).__name__ == "MambaForCausalLM"
    killed = tmp_path / f".out.tmp-{2 ** 22 + 7}"  # what a run killed outright leaves (a pid that cannot exist)
    killed.mkdir()
    genomix.hub.convert(layouts["hyena"], dst, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert type(from_pretrained(dst)).__name__ == "HyenaForCausalLM"


def test_an_earlier_genomix_checkpoint_is_replaced_only_with_overwrite(layouts, tmp_path, capsys):
    """A mistyped output folder must not lose a model: the checkpoint there stays unless --overwrite is given."""
    dst = tmp_path / "out"
    assert main(["convert", str(layouts["mamba"]), str(dst), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in dst.iterdir()}
    assert main(["convert", str(layouts["hyena"]), str(dst), "--quiet"]) == 2
    assert re.search(r"out: holds a genomix checkpoint already; choose a new folder, or replace it with "
                     r"overwrite=True \(--overwrite\)", capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before
    assert main(["convert", str(layouts["hyena"]), str(dst), "--quiet", "--overwrite"]) == 0
    assert type(from_pretrained(dst)).__name__ == "HyenaForCausalLM"


def test_overwrite_replaces_a_checkpoint_but_never_the_users_files_beside_it(layouts, tmp_path, capsys):
    """--overwrite replaces the files a genomix save writes; a folder that also holds the user's results (names
    such as eval_results.json match no save) is refused whole, so nothing of theirs is deleted."""
    dst = tmp_path / "finetuned"
    genomix.hub.convert(layouts["mamba"], dst)
    (dst / "eval_results.json").write_text('{"acc": 0.93}')
    (dst / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in dst.iterdir()}
    assert main(["convert", str(layouts["hyena"]), str(dst), "--quiet", "--overwrite"]) == 2
    assert re.search(r"finetuned: holds a genomix checkpoint and files a genomix save does not write "
                     r"\(eval_results\.json, notes\.txt\), which replacing it would delete", capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before


def test_a_symlinked_destination_is_written_through(layouts, tmp_path):
    """The link stays a link to the replaced checkpoint, and nothing is left beside either."""
    target = tmp_path / "store" / "model"
    genomix.hub.convert(layouts["mamba"], target)
    link = tmp_path / "model-link"
    link.symlink_to(target, target_is_directory=True)
    genomix.hub.convert(layouts["hyena"], link, overwrite=True)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert type(from_pretrained(target)).__name__ == "HyenaForCausalLM"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-link", "store"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]


def test_transformers_loading_options_load_every_layout_or_say_why_not(layouts):
    """Options written for transformers (device_map, low_cpu_mem_usage, use_safetensors) reached the config as
    unknown fields for checkpoints in other layouts; they load, and options genomix cannot honour are named."""
    from genomix.errors import ConfigError
    from genomix.models.mamba import MambaForCausalLM

    ids = torch.tensor([[7, 8, 9, 10, 7]])
    expected = from_pretrained(layouts["mamba"])(ids).logits
    for options in ({"device_map": "cpu"}, {"device_map": {"": "cpu"}, "low_cpu_mem_usage": True},
                    {"device_map": "auto" if not torch.cuda.is_available() else "cpu", "use_safetensors": False},
                    {"dtype": torch.float32, "torch_dtype": torch.float32}):
        for load in (from_pretrained, MambaForCausalLM.from_pretrained):
            model = load(layouts["mamba"], **options)
            assert torch.equal(model(ids).logits, expected), (load, options)
    refused = [({"device_map": {"backbone.layers.0": "cpu", "lm_head": "cuda:1"}}, "places parts of the model on "
                "different devices"), ({"output_loading_info": True}, "no missing or unexpected keys to report"),
               ({"dtype": torch.bfloat16, "torch_dtype": torch.float16}, "disagree; pass dtype only"),
               ({"device": "cpu", "device_map": "cuda:0"}, "disagree|no CUDA device")]
    for options, message in refused:
        with pytest.raises(ConfigError, match=message):
            from_pretrained(layouts["mamba"], **options)


def test_a_training_runs_folder_points_at_its_model(layouts, tmp_path):
    """`genomix embed --model runs/base` was told to copy a config.json or download the checkpoint again."""
    shutil.copytree(layouts["native"], tmp_path / "run" / "model")
    (tmp_path / "run" / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match=r"run: a training run's folder, not a checkpoint; its model is .*run/model"):
        from_pretrained(tmp_path / "run")


def test_forcing_another_layout_names_the_one_the_folder_is_in(layouts, tmp_path, capsys):
    assert main(["convert", str(layouts["mamba"]), str(tmp_path / "o"), "--format", "genomix"]) == 2
    assert "not a genomix checkpoint" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match=r"it is in the hyenadna layout: drop the format option"):
        from_pretrained(layouts["hyena"], format="hyenadna-hf")


def test_an_uncached_hub_id_offline_says_how_to_fetch_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match=r"not in the Hugging Face cache .*`hf download "
                                            r"kuleshov-group/caduceus-ph --revision v1 --cache-dir "):
        from_pretrained("kuleshov-group/caduceus-ph", revision="v1", cache_dir=tmp_path)
    assert main(["convert", "LongSafari/hyenadna-tiny-1k-seqlen-hf", str(tmp_path / "o"), "--quiet"]) == 2
    assert "hf download LongSafari/hyenadna-tiny-1k-seqlen-hf" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: (d / "model.safetensors").write_bytes(b"\x10\x00" + bytes(100)), r"cannot read safetensors"),
    (lambda d: shard(d, drop_second=True), r"1 of 2 shard\(s\) missing"),
    (edit_weights(lambda s: s.__setitem__("backbone.bogus", torch.zeros(2))), r"holds 1 weight\(s\) no genomix-hyena"),
    (edit_weights(lambda s: s[first(s)].view(-1).__setitem__(0, float("inf"))), r"NaN or infinite values"),
    (edit_config(d_model="256"), r"config\.json: field\(s\) of the wrong type: d_model must be an integer"),
    (lambda d: (d / "model.safetensors").unlink(), r"config\.json is here but no weights"),
], ids=["truncated", "missing-shard", "extra-tensor", "inf-weights", "wrong-type", "no-weights"])
@pytest.mark.parametrize("loader", ["class", "auto"])
def test_model_classes_report_broken_native_files_as_from_pretrained_does(layouts, tmp_path, mutate, message, loader):
    """Through the family's class or transformers' AutoModel (which hands the class the config it read)."""
    from transformers import AutoModelForCausalLM

    from genomix.models.hyena import HyenaForCausalLM

    broken = shutil.copytree(layouts["native"], tmp_path / "native")
    mutate(broken)
    with pytest.raises(CheckpointError, match=message):
        (HyenaForCausalLM if loader == "class" else AutoModelForCausalLM).from_pretrained(broken)


def test_a_refused_icl_run_writes_nothing_and_non_finite_logits_are_named(layouts, shared_dir, tmp_path, capsys):
    from genomix.tasks.metrics import require_finite_logits

    out = tmp_path / "icl"
    args = ["icl", "--model", str(layouts["cadph"]), "--task", str(shared_dir / "data" / "gue" / "tf" / "0"),
            "--out", str(out), "--soft-prompt", "2", "--steps", "1", "--quiet", "--device", "cpu"]
    assert main(args) == 2
    assert "soft prompts need a causal LM" in capsys.readouterr().err
    assert not out.exists()  # checked before the model loads, made only at the first write
    logits = np.zeros((3, 2))
    require_finite_logits(logits, "m", "dev")
    logits[1, 0] = np.nan
    with pytest.raises(GenomixError, match=r"m gave NaN or infinite class logits for 1 of 3 dev row\(s\) \(first: "
                                           r"row 1\)"):
        require_finite_logits(logits, "m", "dev")
