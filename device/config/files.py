"""Every file a terminal's config names, checked the way the service will read it (`run --validate-config`).

A config can be valid TOML with sound values and still not start: a key file that is missing, unreadable,
readable by others, of the wrong kind (a secret state-dir key given where a public key belongs) or damaged.
Each problem names the setting, so the operator fixes the right line before systemd retries a failing start.
Secret keys the terminal creates on first start (signing, template, gallery-at-rest) may be absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from device.config import Config
from device.config.privacy import read_public_key_file
from device.privacy.keyfile import KeyFileError, load_secret

SECRET_KEY_BYTES = 32  # Ed25519 seed, template transform key, SecretBox key: all 32 bytes


def _readable(path: Path) -> None:
    with open(path, "rb") as f:
        f.read(1)


def _public_key(path: Path) -> None:
    read_public_key_file(path)


def _secret_created_on_first_start(path: Path) -> None:
    if path.exists():
        load_secret(path, SECRET_KEY_BYTES)
        return
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is None or not os.access(parent, os.W_OK):
        raise ValueError(f"does not exist and {parent or path.parent} is not writable to create it")


def named_files(cfg: Config) -> list[tuple[str, Path, Callable[[Path], None]]]:
    """(setting, path, check) for every file the config names or defaults to."""
    state = Path(cfg.service.state_dir)
    privacy, ident, mqtt = cfg.privacy, cfg.identity, cfg.mqtt
    files: list[tuple[str, Path | None, Callable[[Path], None]]] = [
        ("mqtt.password_file", mqtt.password_file, _readable),
        ("mqtt.tls_ca", mqtt.tls_ca, _readable),
        ("mqtt.tls_cert", mqtt.tls_cert, _readable),
        ("mqtt.tls_key", mqtt.tls_key, _readable),
        ("control.command_public_key_file", cfg.control.command_public_key_file, _public_key),
        ("privacy.backend_public_key_file", privacy.backend_public_key_file, _public_key),
        (
            "privacy.signing_key_file",
            privacy.signing_key_file or state / "signing.key",
            _secret_created_on_first_start,
        ),
        ("identity.gallery_public_key_file", ident.gallery_public_key_file, _public_key),
    ]
    if privacy.template_transform:
        files.append(
            (
                "privacy.template_key_file",
                privacy.template_key_file or state / "template.key",
                _secret_created_on_first_start,
            )
        )
    if ident.gallery_public_key_file is not None:
        files.append(
            (
                "identity.gallery_key_file",
                ident.gallery_key_file or state / "gallery.key",
                _secret_created_on_first_start,
            )
        )
    return [(name, path, check) for name, path, check in files if path is not None]


def file_problems(cfg: Config) -> list[str]:
    """One `setting path: what is wrong` line per file the service could not use as configured."""
    problems = []
    for setting, path, check in named_files(cfg):
        try:
            check(path)
        except OSError as exc:
            problems.append(f"{setting} {path}: {exc.strerror or exc}")
        except (ValueError, KeyFileError) as exc:
            problems.append(f"{setting} {path}: {exc}")
    return problems
