"""privacy.report: what this terminal sends and keeps, as JSON and in words an auditor can read."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from device.config import Config
from device.infra.modelstore import ModelError, ModelStore
from device.privacy import seal as sealing
from device.privacy.signing import Signer, key_id
from device.privacy.template import TemplateTransform

REPORT_SCHEMA = 1
OBSERVATION_FIELDS = (
    "track_id",
    "decision",
    "first_seen",
    "last_seen",
    "best_frame_time",
    "box",
    "quality",
    "liveness",
    "reasons",
)
# Manifest details worth an auditor's eye (where from, which version, how quantized); the rest is build detail.
SOURCE_DETAILS = ("registry", "package", "version")


def _models(models_dir: Path | None) -> tuple[list[dict[str, Any]], str | None]:
    try:
        store = ModelStore(models_dir)
    except ModelError as exc:
        return [], str(exc)
    models = []
    for entry in store.entries.values():
        item: dict[str, Any] = {"name": entry.name, "file": entry.file, "sha256": entry.sha256}
        source, quant = entry.info.get("source"), entry.info.get("quantization")
        if source is not None:
            item["source"] = (
                {k: source[k] for k in SOURCE_DETAILS if k in source} if isinstance(source, dict) else source
            )
        if quant is not None:
            item["quantization"] = quant.get("kind") if isinstance(quant, dict) else quant
        models.append(item)
    return models, None


def build_report(
    config: Config, signer: Signer, backend_key: bytes | None, template: TemplateTransform | None
) -> dict[str, Any]:
    p = config.privacy
    state_dir = config.service.state_dir
    thumbs_on = p.thumbnail == "face"
    biometric = ["template_key_id"]
    clear = ["embedding", "embedding_dim", "embedding_encoding"] + (
        ["thumbnail", "thumbnail_format", "thumbnail_size"] if thumbs_on else []
    )
    biometric += ["sealed"] if backend_key is not None else clear
    models, models_problem = _models(config.service.models_dir)
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "terminal_id": config.terminal_id,
        "sends": {
            "face_event": {"observation": list(OBSERVATION_FIELDS), "biometric": biometric},
            "thumbnail": {
                "policy": p.thumbnail,
                "max_size_px": p.effective_thumbnail_size if thumbs_on else 0,
                "margin": p.thumbnail_margin,
                "format": "png" if thumbs_on else None,
                "masked_outside_face_ellipse": thumbs_on,
                "metadata": "none",
                "unsafe_test_override": p.unsafe_test_thumbnail_size is not None,
            },
            "sealing": {
                "enabled": backend_key is not None,
                "alg": sealing.ALG if backend_key is not None else None,
                "sealed_fields": clear if backend_key is not None else [],
                "backend_key_fingerprint": key_id(backend_key) if backend_key is not None else None,
            },
            "template_transform": {
                "enabled": template is not None,
                "key_id": template.key_id if template is not None else None,
            },
            "signing": {
                "alg": "Ed25519",
                "key_id": signer.key_id,
                "public_key": base64.b64encode(signer.public_key).decode(),
            },
        },
        "keeps": {
            "frames": "never: camera frames live only in a small ring of RAM buffers, zeroed after use; core dumps are off",
            "outbox": {
                "holds": "signed face events exactly as published (protected as above), until the broker acknowledges them",
                "max_age_s": config.outbox.max_age_s,
                "max_events": config.outbox.max_events,
                "max_bytes": config.outbox.max_bytes,
            },
            "keys": {
                "signing": str(p.signing_key_file or state_dir / "signing.key"),
                "template": str(p.template_key_file or state_dir / "template.key")
                if template is not None
                else None,
            },
        },
        "models": models,
    }
    report["sends"]["identity"], report["keeps"]["gallery"] = _identity(config)
    if models_problem is not None:
        report["models_problem"] = models_problem
    report["text"] = report_text(report)
    return report


def _identity(config: Config) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What on-device identity changes in what leaves (sends) and what stays (keeps)."""
    ident, state_dir = config.identity, config.service.state_dir
    enabled = ident.gallery_public_key_file is not None
    sends = {
        "enabled": enabled,
        "match_fields": ["subject", "score", "margin", "threshold", "gallery_version"] if enabled else [],
        "send_embedding": ident.send_embedding,
        "send_thumbnail": ident.send_thumbnail,
        "false_accept_per_search": ident.false_accept_per_search,
        "display_names": "never sent: shown only on the terminal's own door screen (loopback); MQTT prompts "
        "carry codes" + (" and the subject id" if config.privacy.prompt_subject else " only"),
        "gate": config.gate.kind,
    }
    keeps = (
        {
            "file": str(ident.gallery_file or state_dir / "gallery.sealed"),
            "encrypted_with": str(ident.gallery_key_file or state_dir / "gallery.key"),
            "holds": "the backend-signed gallery: subject ids, display names, templates; erased per subject by "
            "subject.purge",
        }
        if enabled
        else None
    )
    return sends, keeps


def _policy_words(policy: str, what: str) -> str:
    return {
        "unknown_only": f"the {what} only for faces it does not recognise",
        "always": f"the {what} for every face, recognised or not",
        "never": f"no {what} at all",
    }[policy]


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} seconds"


def report_text(report: dict[str, Any]) -> str:
    """The report in plain sentences."""
    sends, keeps = report["sends"], report["keeps"]
    thumb, seal, tpl, sig = (
        sends["thumbnail"],
        sends["sealing"],
        sends["template_transform"],
        sends["signing"],
    )
    outbox = keeps["outbox"]
    lines = [f"Terminal {report['terminal_id']} privacy report."]
    lines.append(
        "Per face it sends an event with: "
        + ", ".join(sends["face_event"]["observation"])
        + "; and "
        + ", ".join(sends["face_event"]["biometric"])
        + "."
    )
    if thumb["policy"] == "off":
        lines.append("It sends no image at all (thumbnail policy: off).")
    else:
        lines.append(
            f"The only image it sends is a lossless PNG thumbnail of the face, at most {thumb['max_size_px']}x"
            f"{thumb['max_size_px']} pixels, black outside an ellipse fitted to the face (other faces blacked "
            "out), without metadata."
        )
    if thumb["unsafe_test_override"]:
        lines.append(
            "WARNING: the test-only oversized thumbnail setting is ON; this terminal is not fit for use."
        )
    if seal["enabled"]:
        lines.append(
            f"Embedding and thumbnail are sealed ({seal['alg']}) to the backend key with fingerprint "
            f"{seal['backend_key_fingerprint']}: the broker and anyone on the way see only the metadata."
        )
    else:
        lines.append(
            "Sealing is OFF: the embedding (and thumbnail) travel readable by the broker and subscribers."
        )
    if tpl["enabled"]:
        lines.append(
            f"Embeddings are renewable templates under key {tpl['key_id']} (rotate it to revoke them)."
        )
    else:
        lines.append("Embeddings are sent as computed (no renewable-template transform).")
    ident = sends["identity"]
    if ident["enabled"]:
        lines.append(
            "It identifies faces on the terminal against a backend-signed gallery (kept encrypted at "
            f"{keeps['gallery']['file']}); a face event carries the match (subject id, score, margin, "
            f"threshold, gallery version) and it sends {_policy_words(ident['send_embedding'], 'embedding')} "
            f"and {_policy_words(ident['send_thumbnail'], 'thumbnail')}. Display names never leave the terminal."
        )
    else:
        lines.append("It does not identify faces on the terminal (no gallery key configured).")
    lines.append(f"Every event is signed with Ed25519 key {sig['key_id']} (public key {sig['public_key']}).")
    lines.append(
        f"It keeps no camera frame. Unsent events wait in the outbox for at most {_duration(outbox['max_age_s'])} "
        f"({outbox['max_events']} events / {outbox['max_bytes']} bytes at most), then expire."
    )
    if report["models"]:
        lines.append(
            "Models: "
            + ", ".join(f"{m['name']} ({m['file']}, sha256 {m['sha256'][:12]}...)" for m in report["models"])
            + "."
        )
    else:
        lines.append(f"Models: none readable ({report.get('models_problem', 'empty manifest')}).")
    return "\n".join(lines)
