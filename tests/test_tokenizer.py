"""Tokenizer: HyenaDNA ids, soft-mask/IUPAC handling, speed of the vectorised path, RC, padding, I/O."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from genomix.errors import GenomixError, TokenizationError
from genomix.tokenizer import (
    A_ID,
    BOS_ID,
    CLS_ID,
    MASK_ID,
    N_ID,
    PAD_ID,
    RESERVED_ID,
    SEP_ID,
    T_ID,
    UNK_ID,
    VOCAB,
    Tokenizer,
    decode,
    encode,
    pad_batch,
    reverse_complement,
)


def test_vocabulary_matches_hyenadna_ids():
    expected = ["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]", "A", "C", "G", "T", "N"]
    assert list(VOCAB) == expected
    assert [VOCAB[t] for t in expected] == list(range(12))


def test_soft_masked_bases_share_ids_and_iupac_maps_to_n():
    assert encode("acgtn").tolist() == encode("ACGTN").tolist() == [7, 8, 9, 10, 11]
    assert set(encode("RYSWKMBDHVryswkmbdhv").tolist()) == {N_ID}


@pytest.mark.parametrize("bad, pos", [("ACGTX", 4), ("AC GT", 2), ("ACG-", 3), ("ACGTé", 4)])
def test_invalid_characters_raise_with_position(bad, pos):
    with pytest.raises(TokenizationError, match=f"position {pos}") as info:
        encode(bad)
    assert isinstance(info.value, GenomixError)


def test_encode_accepts_bytes_and_uint8_arrays():
    raw = b"ACGTacgtN"
    from_array = encode(np.frombuffer(raw, dtype=np.uint8))
    assert from_array.tolist() == encode(raw).tolist() == encode(raw.decode()).tolist()
    with pytest.raises(TypeError):
        encode(np.zeros(3, dtype=np.int32))


def test_million_bases_encode_in_milliseconds():
    rng = np.random.default_rng(0)
    seq = rng.choice(np.frombuffer(b"ACGTacgtN", dtype=np.uint8), size=1_000_000).tobytes().decode()
    encode(seq)  # warm
    best = min(_timed(lambda: encode(seq)) for _ in range(3))
    assert best < 0.25, f"encoding 1M bases took {best * 1e3:.1f} ms"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_decode_round_trips_upper_case():
    assert decode(encode("acgtNNa")) == "ACGTNNA"
    assert decode([2, 7, 4, 10], skip_special_tokens=False) == "[BOS]A[PAD]T"


def test_reverse_complement_numpy_and_torch():
    ids = encode("AACGTN")
    rc = reverse_complement(ids)
    assert decode(rc) == "NACGTT"
    assert rc.flags.c_contiguous and torch.equal(torch.as_tensor(rc), torch.as_tensor(rc.copy()))  # no stride -1
    assert np.array_equal(reverse_complement(rc), ids)
    batch = torch.tensor(np.stack([ids, encode("GGGCCC")]))
    rc_t = reverse_complement(batch)
    assert rc_t.dtype == batch.dtype
    assert decode(rc_t[1].numpy()) == "GGGCCC"
    assert torch.equal(reverse_complement(rc_t), batch)
    specials = np.array([0, 1, 2, 3, 4, N_ID])
    assert reverse_complement(specials).tolist() == specials[::-1].tolist()
    for bad in (np.array([-1, 7]), torch.tensor([[7, -3]])):  # -1 indexed the table from its end: [10, 255]
        with pytest.raises(ValueError, match=r"token ids in \[0, 256\), got -\d\.\.7"):
            reverse_complement(bad)


def test_pad_batch_left_and_right():
    ids, mask = pad_batch([encode("ACG"), encode("T")])
    assert ids.tolist() == [[7, 8, 9], [PAD_ID, PAD_ID, T_ID]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, _ = pad_batch([encode("A")], side="right", length=3)
    assert ids.tolist() == [[A_ID, PAD_ID, PAD_ID]]
    # every refusal is a GenomixError (it was a bare ValueError or TypeError)
    with pytest.raises(GenomixError, match="length 4 does not fit the requested length 2"):
        pad_batch([encode("ACGT")], length=2)
    with pytest.raises(GenomixError, match="side must be 'left' or 'right'"):
        pad_batch([encode("ACGT")], side="middle")
    for text in (["ACGT", "AC"], "ACGT"):  # text, not ids: int("ACGT") failed deep inside numpy
        with pytest.raises(GenomixError, match="token id arrays, not text; encode first"):
            pad_batch(text)


def test_transformers_tokenizer_call_pads_left_and_appends_sep(tmp_path):
    tok = Tokenizer()
    batch = tok(["ACG", "ACGTT"], padding=True)
    assert batch["input_ids"] == [[4, 4, 7, 8, 9, 1], [7, 8, 9, 10, 10, 1]]
    assert batch["attention_mask"][0] == [0, 0, 1, 1, 1, 1]
    assert tok.decode(batch["input_ids"][1], skip_special_tokens=True) == "ACGTT"
    tok.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    assert again("acgt")["input_ids"] == tok("ACGT")["input_ids"]
    assert again.padding_side == "left"
    assert again.pad_token_id == PAD_ID and again.mask_token_id == 3


def test_tokenizer_rejects_non_dna():
    with pytest.raises(TokenizationError):
        Tokenizer()("ACGU")


def test_ids_past_the_vocabulary_lists_and_unknown_tokens():
    """An argmax over 16-wide (padded) logits can give ids 12..15: decoding them is a clear error, not an
    IndexError; lists reverse-complement like arrays; an unknown token is [UNK], as in transformers."""
    with pytest.raises(TokenizationError, match=r"token ids must lie in \[0, 12\); got 7\.\.13"):
        decode([7, 13])
    assert reverse_complement([7, 8, 10]).tolist() == [7, 9, 10]
    assert Tokenizer().convert_tokens_to_ids(["X", "A"]) == [Tokenizer().unk_token_id, 7]


def test_decode_keeps_every_special_token_unless_told_to_skip_them():
    """``Tokenizer.decode(ids, skip_special_tokens=False)`` dropped [SEP] and every other special token; it now
    writes each by name where it stands, as transformers' character tokenizers do, and agrees with :func:`decode`."""
    tok = Tokenizer()
    ids = [CLS_ID, 7, MASK_ID, 8, UNK_ID, 9, PAD_ID, RESERVED_ID, BOS_ID, 10, SEP_ID]
    written = "[CLS]A[MASK]C[UNK]G[PAD][RESERVED][BOS]T[SEP]"
    assert tok.decode(ids, skip_special_tokens=False) == tok.decode(ids) == written
    assert decode(ids, skip_special_tokens=False) == written
    assert tok.convert_tokens_to_string(tok.convert_ids_to_tokens(ids)) == written
    assert tok.decode(ids, skip_special_tokens=True) == decode(ids) == "ACGT"
    encoded = tok(["ACG", "T"], padding=True, return_tensors="pt")["input_ids"]
    assert tok.batch_decode(encoded) == ["ACG[SEP]", "[PAD][PAD]T[SEP]"]
    assert tok.batch_decode(encoded, skip_special_tokens=True) == ["ACG", "T"]
    # a padded-logits column (transformers' fill-mask pipeline decodes its top-k): [UNK], as transformers writes it
    assert tok.decode([7, 13]) == "A[UNK]" and tok.decode(13, skip_special_tokens=True) == ""


def test_decode_refuses_a_batch_instead_of_running_its_rows_together():
    """``decode`` of (batch, length) ids returned the rows' bases as one string ("ACGAAA")."""
    batch = np.array([[A_ID, T_ID], [T_ID, A_ID]])
    with pytest.raises(TokenizationError, match="one sequence"):
        decode(batch)
    with pytest.raises(TokenizationError, match="one sequence"):
        Tokenizer.decode_dna(torch.as_tensor(batch))
    assert decode(batch[0]) == "AT"


def test_reverse_complement_of_text_says_to_encode_first():
    """A string failed with "'str' object has no attribute 'device'"."""
    with pytest.raises(TypeError, match="encode first"):
        reverse_complement("ACGT")
    assert decode(reverse_complement(encode("AACG"))) == "CGTT"
