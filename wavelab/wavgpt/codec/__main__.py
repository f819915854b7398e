"""``python -m wavelab.wavgpt.codec encode|decode|roundtrip ckpt_path=... ...`` (keys: conf/codec.yaml).

encode prints the code as base64 and its size; decode prints the text; roundtrip both. With
``exact=true`` the code is followed by its ids range-coded (``wavelab.wavgpt.codec.exact``), and
decode gives the text back exactly; decode reads either kind of code. Every user error (bad key
value, unreadable or mismatched code, wrong checkpoint, a payload that fails its CRC32) ends as
one line and exit code 2, before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import logging
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from wavelab.core.cli import checked_device, hydra_entry, required
from wavelab.core.errors import ConfigError
from wavelab.core.user_files import input_file, output_file, write_output

log = logging.getLogger("wavelab.wavgpt.codec")

VERBS = ("encode", "decode", "roundtrip")
EXACT_MODES = ("prior", "head", "product")
# Keys whose values are free text or file names, passed to Hydra literally.
LITERAL_KEYS = ("ckpt_path", "text", "out", "code", "code_file", "prior")


def given(key: str, value: str, limit: int = 40) -> str:
    """``key=value`` for an error line; a long base64 code is cut, a file name never."""
    if key == "code" and len(value) > limit:
        value = value[:limit] + "..."
    return f"{key}={value!r}"


def read_code(cfg: DictConfig):
    """The code of ``code=`` or ``code_file=``, parsed (a ``SparseCode``, or an ``ExactFile``
    when it starts with the exact format's magic); ConfigError names the key."""
    from wavelab.wavgpt.code import exact_format
    from wavelab.wavgpt.code.sparse_code import SparseCode

    if (cfg.code is None) == (cfg.code_file is None):
        raise ConfigError("decode needs exactly one of code=BASE64 and code_file=PATH")
    if cfg.code_file is not None:
        key, value = "code_file", str(cfg.code_file)
        data = input_file(value, key).read_bytes()
    else:
        key, value = "code", str(cfg.code)
        try:
            data = base64.b64decode(value, validate=True)
        except binascii.Error as e:
            raise ConfigError(f"{given(key, value)} is invalid: not base64 ({e})") from None
    parse = SparseCode.from_bytes
    if data[:4] == exact_format.MAGIC:
        parse = exact_format.ExactFile.from_bytes
    try:
        return parse(data)
    except ValueError as e:
        raise ConfigError(f"{given(key, value)} is invalid: {e}") from None


def is_code_file(path: Path) -> bool:
    """Whether ``path`` holds a code (an earlier ``out=``), which encode may replace."""
    from wavelab.wavgpt.code.exact_format import ExactFile
    from wavelab.wavgpt.code.sparse_code import SparseCode

    if path.stat().st_size > 1 << 24:  # far larger than any code: not one, and not read whole
        return False
    data = path.read_bytes()
    for parse in (SparseCode.from_bytes, ExactFile.from_bytes):
        try:
            parse(data)
            return True
        except ValueError:
            pass
    return False


def checked_out(cfg: DictConfig) -> Path | None:
    """``out=`` as a file encode may write (wavelab.core.user_files.output_file): never the
    checkpoint, and an existing file only if it is a code or ``overwrite=true``."""
    if cfg.out is None:
        return None
    return output_file(
        str(cfg.out),
        "out",
        protect=[str(cfg.ckpt_path)],
        replaceable=is_code_file,
        overwrite=bool(cfg.get("overwrite", False)),
    )


def load_prior_lm(path: str, codec, device: str):
    """The ``prior=`` language model, on ``codec``'s WordPiece; ConfigError naming it."""
    from wavelab.core.checkpoints import load_module
    from wavelab.wavgpt.codec.prior import check_prior

    lm = load_module(path, map_location=device, key="prior")
    check_prior(lm, codec.tokenizer.get_vocab(), f"prior={path!r}")
    return lm


def exact_coder(cfg: DictConfig, codec, lm, mode: str, alpha: float, beta: float):
    """The ExactCoder of ``mode``; ConfigError naming the key a mode misses."""
    from wavelab.wavgpt.codec.exact import ExactCoder, Frame

    if mode in ("prior", "product") and lm is None:
        raise ConfigError(f"exact_mode={mode!r} needs prior=<a language model checkpoint>")
    tok = codec.tokenizer
    frame = Frame(tok.cls_token_id, tok.sep_token_id)
    vocab = codec.module.encoder.vocab_size
    return ExactCoder(mode, frame, vocab, prior=lm, codec=codec, alpha=alpha, beta=beta)


def exact_settings(cfg: DictConfig) -> tuple[str, float, float]:
    mode = str(cfg.exact_mode)
    if mode not in EXACT_MODES:
        raise ConfigError(f"exact_mode={mode!r} is invalid: use one of {', '.join(EXACT_MODES)}")
    return mode, float(cfg.exact_alpha), float(cfg.exact_beta)


def decode_exact(cfg: DictConfig, codec, lm, file) -> str:
    """The text of an exact code's first block; ConfigError for a code this setup can't read."""
    from wavelab.wavgpt.code.sparse_code import SparseCode

    key = "code_file" if cfg.code_file is not None else "code"
    value = str(cfg.code_file if cfg.code_file is not None else cfg.code)
    if len(file.blocks) != 1:
        raise ConfigError(f"{given(key, value)} holds {len(file.blocks)} blocks; decode reads one")
    try:
        coder = exact_coder(cfg, codec, lm, file.mode, file.alpha, file.beta)
        if file.mode != "prior":
            codec.check(SparseCode.from_bytes(file.blocks[0].code))
        (ids,) = coder.decode_file(file)
    except (ValueError, ConfigError) as e:
        raise ConfigError(f"{given(key, value)} can not be decoded exactly: {e}") from None
    return codec.tokenizer.decode(ids, skip_special_tokens=True)


def run(cfg: DictConfig) -> None:
    verb = None if OmegaConf.is_missing(cfg, "verb") else cfg.verb
    if verb not in VERBS:
        raise ConfigError(f"verb={verb!r} is invalid: use one of {', '.join(VERBS)}")
    ckpt_path = required(cfg, "ckpt_path")
    device = checked_device(str(cfg.device))
    # Everything the user typed is checked before the (slow) checkpoint load.
    if verb == "decode":
        code = read_code(cfg)
    else:
        text = required(cfg, "text")
    exact = bool(cfg.exact) and verb != "decode"
    mode, alpha, beta = exact_settings(cfg)
    out = checked_out(cfg) if verb == "encode" else None
    settings = None
    if cfg.get("prior") is not None:
        from wavelab.wavgpt.config import PriorSettings

        settings = PriorSettings(cfg.prior_weight, cfg.prior_beam, cfg.prior_candidates)

    from wavelab.wavgpt.code.exact_format import ExactFile
    from wavelab.wavgpt.codec.api import WavGPTCodec

    codec = WavGPTCodec.from_checkpoint(ckpt_path, map_location=device)
    lm = None if settings is None else load_prior_lm(str(cfg.prior), codec, device)
    if verb == "decode":
        if isinstance(code, ExactFile):
            print(decode_exact(cfg, codec, lm, code))
            return
        try:
            codec.check(code)
        except ValueError as e:
            key = "code_file" if cfg.code_file is not None else "code"
            value = str(cfg.code_file if cfg.code_file is not None else cfg.code)
            raise ConfigError(f"{given(key, value)} does not fit ckpt_path: {e}") from None
        if lm is not None:
            from wavelab.wavgpt.codec.prior import PriorDecoder

            codec.prior = PriorDecoder(lm, settings)
        print(codec.decode([code])[0])
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, mask = codec.tokenize([text])
    for w in caught:
        log.warning("warning: %s", w.message)
    (code,) = codec.encode_ids(ids, mask)
    data = code.to_bytes()
    if exact:
        block_ids = ids[0, : int(mask.sum())].tolist()
        coder = exact_coder(cfg, codec, lm, mode, alpha, beta)
        record, ideal = coder.measured_block(block_ids, data)
        exact_bytes = ExactFile(mode, coder.alpha, coder.beta, coder.prior_fingerprint, (record,))
        data = exact_bytes.to_bytes()
        n = record.n_tokens
        size = (
            f"code {8 * len(record.code) / n:.1f} + payload {record.payload_bits() / n:.1f} "
            f"bits/token (ideal {ideal / n:.1f}) for {n} tokens; {8 * len(data)} bits in the file"
        )
    else:
        size = str(codec.size(code))
    if verb == "encode":
        print(base64.b64encode(data).decode())
        print(f"# k={code.k} of {code.block_size}x{code.d} coefficients; {size}")
        if out is not None:
            write_output(out, data, "out")
            print(f"# wrote {out}")
        return
    if exact:
        (decoded_ids,) = coder.decode_file(ExactFile.from_bytes(data))
        decoded = codec.tokenizer.decode(decoded_ids, skip_special_tokens=True)
        size += "; the decoded ids are the text's" if decoded_ids == block_ids else "; NOT exact"
    else:
        if lm is not None:
            from wavelab.wavgpt.codec.prior import PriorDecoder

            codec.prior = PriorDecoder(lm, settings)
        decoded = codec.decode([data])[0]
    print(f"text:    {text}")
    print(f"decoded: {decoded}")
    print(f"code:    k={code.k}; {size}")


@hydra_entry("codec", text_keys=LITERAL_KEYS, bare_word="verb")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
