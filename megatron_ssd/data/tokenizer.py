"""One tokenizer interface over HF folders (`tokenizer.json` / `tokenizer_config.json`) and sentencepiece `.model`
files, plus a fingerprint that ties packed data to the exact tokenizer and chat template that produced it.

Why a wrapper: the pack stage, the samplers and the evaluators must agree on special ids (EOS, padding) and on the
chat template; the wrapper gives both backends the same few methods, and refuses (with the fix) what a backend
cannot do, e.g. a chat template for a bare sentencepiece model.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import hashlib
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError, DataError

# Files that decide how text becomes ids (and how messages become text). Anything else in a model folder
# (weights, config.json, generation_config.json) does not change tokenisation and is left out of the fingerprint.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
)
TOKENIZER_SUFFIXES = (".model", ".tiktoken")


def tokenizer_files(path: str | Path) -> list[Path]:
    """The files `tokenizer_fingerprint` hashes: a `.model` file itself, or the tokenizer files of a folder."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError("no such tokenizer file or folder.", path=str(p))
    files = [
        f for f in sorted(p.iterdir())
        if f.is_file() and (f.name in TOKENIZER_FILES or f.suffix in TOKENIZER_SUFFIXES)
    ]
    if not files:
        raise DataError(
            f"no tokenizer files found (looked for {', '.join(TOKENIZER_FILES)} and *.model); point to the model's "
            "HF folder or a sentencepiece .model file.",
            path=str(p),
        )
    return files


def tokenizer_fingerprint(path: str | Path, chat_template: str | None = None) -> str:
    """sha256 over the names and contents of the tokenizer files (and an explicit chat template, if any).

    Packed data records this value; readers refuse data whose fingerprint differs from their tokenizer's, because
    ids from another vocabulary train silently wrong.
    """
    h = hashlib.sha256()
    for f in tokenizer_files(path):
        h.update(f.name.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    if chat_template is not None:
        h.update(b"chat_template\0" + chat_template.encode())
    return h.hexdigest()


class Tokenizer(ABC):
    """Backend-neutral tokenizer. Build it with `load_tokenizer`."""

    backend: str
    path: Path

    @abstractmethod
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ...

    @abstractmethod
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ...

    @abstractmethod
    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        ...

    @property
    @abstractmethod
    def eos_id(self) -> int:
        ...

    @property
    @abstractmethod
    def pad_id(self) -> int:
        """The padding id; EOS when the tokenizer has none (padding is always loss-masked, so any id is safe)."""
        ...

    @property
    @abstractmethod
    def bos_id(self) -> int | None:
        ...

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce, added/special tokens included."""
        ...

    def fingerprint(self) -> str:
        return tokenizer_fingerprint(self.path, getattr(self, "_explicit_template", None))


class HFTokenizer(Tokenizer):
    backend = "hf"

    def __init__(self, folder: Path, chat_template: str | None = None):
        from transformers import AutoTokenizer

        self.path = folder
        try:
            self._tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"cannot load an HF tokenizer from this folder ({exc}).", path=str(folder)) from exc
        self._explicit_template = chat_template
        if chat_template is not None:
            self._tok.chat_template = chat_template
        if self._tok.eos_token_id is None:
            raise DataError("the tokenizer defines no eos_token; set it in tokenizer_config.json.", path=str(folder))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        if not self._tok.chat_template:
            raise ConfigError(
                f"{self.path}: the tokenizer has no chat template (no chat_template in tokenizer_config.json or "
                "chat_template.jinja); add one or pass chat_template= to load_tokenizer."
            )
        return self._tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)

    @property
    def eos_id(self) -> int:
        return int(self._tok.eos_token_id)

    @property
    def pad_id(self) -> int:
        pad = self._tok.pad_token_id
        return int(pad) if pad is not None else self.eos_id

    @property
    def bos_id(self) -> int | None:
        bos = self._tok.bos_token_id
        return int(bos) if bos is not None else None

    @property
    def vocab_size(self) -> int:
        return len(self._tok)


class SentencePieceTokenizer(Tokenizer):
    backend = "sentencepiece"

    def __init__(self, model_file: Path, chat_template: str | None = None):
        import sentencepiece as spm

        self.path = model_file
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        except (OSError, RuntimeError) as exc:
            raise DataError(f"not a sentencepiece model ({exc}).", path=str(model_file)) from exc
        self._explicit_template = chat_template
        if self._sp.eos_id() < 0:
            raise DataError("the sentencepiece model defines no EOS piece (eos_id=-1).", path=str(model_file))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = self._sp.encode(text, out_type=int)
        return ([self.bos_id] if add_special_tokens and self.bos_id is not None else []) + ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if not self._sp.is_control(i)]
        return self._sp.decode(ids)

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        if self._explicit_template is None:
            raise ConfigError(
                f"{self.path}: a sentencepiece model carries no chat template; pass chat_template= (a Jinja string "
                "as in HF tokenizer_config.json) to load_tokenizer, or use the model's HF folder instead."
            )
        return _render_template(
            self._explicit_template,
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self._sp.id_to_piece(self.bos_id) if self.bos_id is not None else "",
            eos_token=self._sp.id_to_piece(self.eos_id),
        )

    @property
    def eos_id(self) -> int:
        return int(self._sp.eos_id())

    @property
    def pad_id(self) -> int:
        pad = self._sp.pad_id()
        return int(pad) if pad >= 0 else self.eos_id

    @property
    def bos_id(self) -> int | None:
        bos = self._sp.bos_id()
        return int(bos) if bos >= 0 else None

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())


def _render_template(template: str, **variables: Any) -> str:
    """Render a chat template the way transformers does (sandboxed Jinja, trim/lstrip blocks)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(**variables)


def load_tokenizer(path: str | Path, chat_template: str | None = None) -> Tokenizer:
    """An HF folder (tokenizer.json or tokenizer_config.json) or a sentencepiece `.model` file (or a folder holding
    only one)."""
    p = Path(path)
    if p.is_dir():
        if (p / "tokenizer.json").exists() or (p / "tokenizer_config.json").exists():
            return HFTokenizer(p, chat_template)
        models = sorted(p.glob("*.model"))
        if len(models) == 1:
            return SentencePieceTokenizer(models[0], chat_template)
        raise DataError(
            "expected tokenizer.json / tokenizer_config.json (HF) or exactly one sentencepiece *.model file here, "
            f"found {[m.name for m in models] or 'none'}.",
            path=str(p),
        )
    if p.is_file() and p.suffix == ".model":
        return SentencePieceTokenizer(p, chat_template)
    raise DataError("not a tokenizer folder or a sentencepiece .model file.", path=str(p))
