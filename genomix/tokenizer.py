"""Character-level DNA tokenizer with HyenaDNA's vocabulary and ids.

Ids (fixed, shared by every genomix model and by the released HyenaDNA checkpoints)::

    [CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4 [RESERVED]=5 [UNK]=6 A=7 C=8 G=9 T=10 N=11

Lower-case (soft-masked) bases map to the same ids as upper case, IUPAC ambiguity codes map to N, and
anything else is an error that names the character and its position. The hot paths are vectorised:
:func:`encode` turns a string, bytes or a uint8 array of ASCII codes into ids through one 256-entry
lookup table (a million bases take about a millisecond), and :func:`reverse_complement` works on ids.

:class:`Tokenizer` wraps the same tables in a ``transformers`` slow tokenizer so that ``AutoTokenizer``,
``save_pretrained``/``from_pretrained`` and the ``__call__`` padding machinery work as users expect.
Padding defaults to the left, which is what causal models need.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
from transformers import PreTrainedTokenizer

from .errors import ConfigError, InputFormatError, TokenizationError

if TYPE_CHECKING:
    import torch

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
BASES = ("A", "C", "G", "T", "N")
VOCAB: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + BASES)}
CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = range(7)
A_ID, C_ID, G_ID, T_ID, N_ID = range(7, 12)
VOCAB_SIZE = len(VOCAB)  # 12; models pad their embedding rows to a multiple of 8 (16)
BASE_IDS = np.array([A_ID, C_ID, G_ID, T_ID], dtype=np.int64)
IUPAC_AMBIGUITY = "RYSWKMBDHVN"
INVALID = 255  # marker in the byte lookup table


def _byte_table() -> np.ndarray:
    table = np.full(256, INVALID, dtype=np.uint8)
    for base, idx in zip("ACGT", (A_ID, C_ID, G_ID, T_ID)):
        table[ord(base)] = table[ord(base.lower())] = idx
    for code in IUPAC_AMBIGUITY:
        table[ord(code)] = table[ord(code.lower())] = N_ID
    return table


def _complement_table() -> np.ndarray:
    table = np.arange(256, dtype=np.int64)  # specials and N map to themselves
    table[A_ID], table[T_ID] = T_ID, A_ID
    table[C_ID], table[G_ID] = G_ID, C_ID
    return table


BYTE_TO_ID = _byte_table()
COMPLEMENT_ID = _complement_table()
ID_TO_CHAR = np.frombuffer(b"".join(t.encode() if len(t) == 1 else b"?" for t in VOCAB), dtype=np.uint8)


def _as_bytes(seq: str | bytes | bytearray | np.ndarray) -> np.ndarray:
    if isinstance(seq, np.ndarray):
        if seq.dtype != np.uint8:
            raise TypeError(f"byte arrays must be uint8 ASCII codes, got dtype {seq.dtype}")
        return seq
    if isinstance(seq, str):
        try:
            seq = seq.encode("ascii")
        except UnicodeEncodeError as exc:
            raise TokenizationError(
                f"non-ASCII character {seq[exc.start]!r} at position {exc.start}: DNA must be A/C/G/T/N "
                "or an IUPAC ambiguity code"
            ) from None
    return np.frombuffer(bytes(seq), dtype=np.uint8)


def encode(seq: str | bytes | bytearray | np.ndarray, dtype: np.dtype | type = np.int64) -> np.ndarray:
    """Map a DNA sequence (str, bytes, or uint8 ASCII array) to token ids, without special tokens.

    Raises :class:`TokenizationError` naming the first character that is neither a base nor an IUPAC
    ambiguity code. Vectorised: cost is one table lookup per base.
    """
    codes = _as_bytes(seq)
    ids = BYTE_TO_ID[codes]
    bad = np.flatnonzero(ids == INVALID)
    if bad.size:
        pos = int(bad[0])
        raise TokenizationError(
            f"invalid DNA character {chr(codes[pos])!r} at position {pos} ({bad.size} invalid in total): "
            "expected A/C/G/T/N (any case) or an IUPAC ambiguity code"
        )
    return ids.astype(dtype, copy=False)


def decode(ids: Iterable[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
    """Map ids back to an upper-case string; special tokens (ids below ``A``, ``[RESERVED]`` included) are
    dropped, or with ``skip_special_tokens=False`` written by name where they stand (``"[CLS]AC[SEP]"``, as
    ``transformers``' character tokenizers write them)."""
    arr = np.asarray(ids, dtype=np.int64)
    if arr.ndim > 1:  # a (batch, length) array would otherwise decode as its rows run together
        raise TokenizationError(f"decode takes one sequence of ids, got an array of shape {arr.shape}; decode each "
                                "row (e.g. [decode(row) for row in ids]) or use Tokenizer.batch_decode")
    if arr.size and (arr.min() < 0 or arr.max() >= VOCAB_SIZE):  # e.g. an argmax over padded-vocabulary logits
        raise TokenizationError(f"token ids must lie in [0, {VOCAB_SIZE}); got {int(arr.min())}..{int(arr.max())}")
    if skip_special_tokens:
        return ID_TO_CHAR[arr[arr >= A_ID]].tobytes().decode("ascii")
    names = list(VOCAB)
    return "".join(names[i] for i in arr)


def reverse_complement(ids: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Reverse complement of token ids along the last axis (A<->T, C<->G; N and specials unchanged).

    Works on numpy arrays (and lists of ids, returned as one) and torch tensors of any leading shape. Applying
    it twice is the identity. Ids outside the vocabulary are a ValueError (checking them reads the ids: a sync
    for a CUDA tensor).
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError("reverse_complement works on token ids, not text; encode first: "
                        "decode(reverse_complement(encode(seq)))")
    if isinstance(ids, (list, tuple)):
        ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= len(COMPLEMENT_ID)):  # -1 would index from the end
        raise ValueError(f"reverse_complement takes token ids in [0, {len(COMPLEMENT_ID)}), got {int(ids.min())}.."
                         f"{int(ids.max())}; encode sequences with genomix.tokenizer.encode")
    if isinstance(ids, np.ndarray):
        # a contiguous copy, not a negative-stride view: torch.as_tensor and many C extensions refuse those
        return np.ascontiguousarray(COMPLEMENT_ID[ids][..., ::-1], dtype=ids.dtype)
    import torch

    table = torch.as_tensor(COMPLEMENT_ID, device=ids.device, dtype=ids.dtype)
    return table[ids.long()].flip(-1)


def pad_batch(
    sequences: Sequence[np.ndarray], side: str = "left", pad_id: int = PAD_ID, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack id arrays into ``(batch, length)`` ids and an attention mask (1 = real token).

    ``side='left'`` (the default) keeps the last real token at the last position, as causal models need. Bad
    arguments are :class:`~genomix.errors.ConfigError` (``side``) or :class:`~genomix.errors.InputFormatError`
    (text instead of ids, a sequence longer than ``length``), as elsewhere in the package.
    """
    if side not in ("left", "right"):
        raise ConfigError(f"side must be 'left' or 'right', got {side!r}")
    if isinstance(sequences, (str, bytes)) or any(isinstance(s, (str, bytes)) for s in sequences):
        raise InputFormatError("pad_batch stacks token id arrays, not text; encode first: "
                               "pad_batch([encode(seq) for seq in seqs])")
    longest = max((len(s) for s in sequences), default=0)
    length = longest if length is None else length
    if longest > length:
        raise InputFormatError(f"a sequence of length {longest} does not fit the requested length {length}")
    ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        n = len(seq)
        span = slice(length - n, length) if side == "left" else slice(0, n)
        ids[row, span] = seq
        mask[row, span] = 1
    return ids, mask


class Tokenizer(PreTrainedTokenizer):
    """HyenaDNA-compatible character tokenizer as a ``transformers`` tokenizer.

    ``tok("ACGTN")["input_ids"]`` gives ``[7, 8, 9, 10, 11, 1]`` (a ``[SEP]`` is appended, as HyenaDNA's
    tokenizer does) and ``tok.decode`` of them ``"ACGTN[SEP]"``, or ``"ACGTN"`` with ``skip_special_tokens=True``.
    For long sequences and genome arrays prefer :meth:`encode_dna` / :meth:`decode_dna`, which are vectorised.
    """

    vocab_files_names: dict[str, str] = {}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, model_max_length: int = 1_048_576, padding_side: str = "left", **kwargs) -> None:
        for name, token in (
            ("cls_token", "[CLS]"),
            ("sep_token", "[SEP]"),
            ("bos_token", "[BOS]"),
            ("mask_token", "[MASK]"),
            ("pad_token", "[PAD]"),
            ("unk_token", "[UNK]"),
        ):
            kwargs.setdefault(name, token)
        kwargs.setdefault("eos_token", "[SEP]")
        super().__init__(model_max_length=model_max_length, padding_side=padding_side, **kwargs)

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def get_vocab(self) -> dict[str, int]:
        """The base vocabulary and any tokens added since (``add_tokens``): transformers' ``len(tokenizer)`` counts
        this, which ``model.resize_token_embeddings(len(tokenizer))`` then reads."""
        return {**VOCAB, **self.added_tokens_encoder}

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        ids = encode(text)
        return [list(VOCAB)[i] for i in ids]

    def _convert_token_to_id(self, token: str) -> int:
        if token in VOCAB:
            return VOCAB[token]
        if len(token) == 1:
            try:
                return int(encode(token)[0])
            except TokenizationError:  # as transformers' tokenizers do, an unknown token is [UNK]
                return UNK_ID
        return UNK_ID

    def _convert_id_to_token(self, index: int) -> str:
        return list(VOCAB)[index] if 0 <= index < VOCAB_SIZE else "[UNK]"

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """The tokens side by side, special ones by name (``["A", "[SEP]"]`` -> ``"A[SEP]"``): what
        ``decode(ids, skip_special_tokens=False)`` gives for their ids."""
        return "".join(tokens)

    def _decode(self, token_ids: int | list[int], skip_special_tokens: bool = False, **kwargs: Any) -> str:
        """What ``decode`` / ``batch_decode`` give for one sequence: the tokens side by side, with
        ``skip_special_tokens`` without every special one (``[RESERVED]`` too, as in :func:`decode`, which
        ``transformers``' own skip by id would keep). An id past the vocabulary, a padded-logits column that
        ``transformers``' fill-mask pipeline decodes, is ``[UNK]`` as in ``transformers`` (:func:`decode` refuses
        it). The spacing options (``clean_up_tokenization_spaces``, ...) change nothing: bases have no spaces."""
        tokens = self.convert_ids_to_tokens([token_ids] if isinstance(token_ids, int) else token_ids)
        return self.convert_tokens_to_string([t for t in tokens if not (skip_special_tokens and t in SPECIAL_TOKENS)])

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        out = token_ids_0 + [SEP_ID]
        if token_ids_1 is not None:
            out += token_ids_1 + [SEP_ID]
        return out

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        if already_has_special_tokens:
            return [1 if t < A_ID else 0 for t in token_ids_0]
        mask = [0] * len(token_ids_0) + [1]
        if token_ids_1 is not None:
            mask += [0] * len(token_ids_1) + [1]
        return mask

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        """Write the (fixed) vocabulary as ``vocab.json`` so the saved directory is self-describing."""
        name = (filename_prefix + "-" if filename_prefix else "") + "vocab.json"
        path = os.path.join(save_directory, name)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(VOCAB, fh, indent=1)
        return (path,)

    # -- vectorised helpers -------------------------------------------------------------------------
    encode_dna = staticmethod(encode)
    decode_dna = staticmethod(decode)
    reverse_complement = staticmethod(reverse_complement)
    pad_batch = staticmethod(pad_batch)
