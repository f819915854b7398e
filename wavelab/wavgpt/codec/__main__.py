"""``python -m wavelab.wavgpt.codec encode|decode|roundtrip ckpt_path=... ...`` (keys: conf/codec.yaml).

encode prints the code as base64 and its size; decode prints the text; roundtrip both. Every
user error (bad key value, unreadable or mismatched code, wrong checkpoint) ends as one line
and exit code 2, before anything is written.
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
# Keys whose values are free text or file names, passed to Hydra literally.
LITERAL_KEYS = ("ckpt_path", "text", "out", "code", "code_file", "prior")


def given(key: str, value: str, limit: int = 40) -> str:
    """``key=value`` for an error line; a long base64 code is cut, a file name never."""
    if key == "code" and len(value) > limit:
        value = value[:limit] + "..."
    return f"{key}={value!r}"


def read_code(cfg: DictConfig):
    """The code of ``code=`` or ``code_file=``, parsed; ConfigError names the key."""
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
    try:
        return SparseCode.from_bytes(data)
    except ValueError as e:
        raise ConfigError(f"{given(key, value)} is invalid: {e}") from None


def is_code_file(path: Path) -> bool:
    """Whether ``path`` holds a code (an earlier ``out=``), which encode may replace."""
    from wavelab.wavgpt.code.sparse_code import SparseCode

    if path.stat().st_size > 1 << 24:  # far larger than any code: not one, and not read whole
        return False
    try:
        SparseCode.from_bytes(path.read_bytes())
    except ValueError:
        return False
    return True


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


def load_prior(path: str, settings, codec, device: str):
    """The ``prior=`` language model as a PriorDecoder for ``codec``; ConfigError naming it."""
    from wavelab.core.checkpoints import load_module
    from wavelab.wavgpt.codec.prior import PriorDecoder, check_prior

    lm = load_module(path, map_location=device, key="prior")
    check_prior(lm, codec.tokenizer.get_vocab(), f"prior={path!r}")
    return PriorDecoder(lm, settings)


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
    out = checked_out(cfg) if verb == "encode" else None
    settings = None
    if cfg.get("prior") is not None:
        from wavelab.wavgpt.config import PriorSettings

        settings = PriorSettings(cfg.prior_weight, cfg.prior_beam, cfg.prior_candidates)

    from wavelab.wavgpt.codec.api import WavGPTCodec

    codec = WavGPTCodec.from_checkpoint(ckpt_path, map_location=device)
    if settings is not None:
        codec.prior = load_prior(str(cfg.prior), settings, codec, device)
    if verb == "decode":
        try:
            codec.check(code)
        except ValueError as e:
            key = "code_file" if cfg.code_file is not None else "code"
            value = str(cfg.code_file if cfg.code_file is not None else cfg.code)
            raise ConfigError(f"{given(key, value)} does not fit ckpt_path: {e}") from None
        print(codec.decode([code])[0])
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (code,) = codec.encode([text])
    for w in caught:
        log.warning("warning: %s", w.message)
    data = code.to_bytes()
    if verb == "encode":
        print(base64.b64encode(data).decode())
        print(f"# k={code.k} of {code.block_size}x{code.d} coefficients; {codec.size(code)}")
        if out is not None:
            write_output(out, data, "out")
            print(f"# wrote {out}")
        return
    print(f"text:    {text}")
    print(f"decoded: {codec.decode([data])[0]}")
    print(f"code:    k={code.k}; {codec.size(code)}")


@hydra_entry("codec", text_keys=LITERAL_KEYS, bare_word="verb")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
