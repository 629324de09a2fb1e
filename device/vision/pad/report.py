"""The PAD evaluation as Markdown (docs/pad-report.md is one) and the figures behind it."""

from __future__ import annotations

from typing import Any

from device.vision.pad.presenter import LEAD_IN_S, REACTION_MEDIAN_S, REACTION_RANGE_S, SCRUB_RANGE_S


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(result: dict[str, Any], summary: dict[str, Any], command: str) -> str:
    cfg = result["config"]
    live = cfg["liveness"]
    lines = [
        "# Presentation-attack evaluation (ISO/IEC 30107-3 terms)",
        "",
        f"Made by: `{command}`",
        "",
        f"Seeds per clip: {cfg['seeds']} (stills: {cfg['still_seeds']}); tries per person: {cfg['tries']}; "
        f"in-challenge retries per failed step: {live['step_retries']}; onset window "
        f"{live['onset_min_s']}-{live['onset_max_s']} s; pause before each prompt "
        f"{live['prompt_delay_min_s']}-{live['prompt_delay_max_s']} s.",
        "",
        "Simulated presenter: waits on the clip's own neutral frames; on a prompt it plays one of the clip's "
        f"annotated segments of that motion, {LEAD_IN_S} s before the annotated onset, after a reaction time "
        f"(lognormal, median {REACTION_MEDIAN_S} s, {REACTION_RANGE_S[0]}-{REACTION_RANGE_S[1]} s: an assumption). "
        f"A scrubbing attacker needs {SCRUB_RANGE_S[0]}-{SCRUB_RANGE_S[1]} s (assumed). The decision sees only "
        "pixels.",
        "",
        "## Bona fide: BPCER per clip and variant",
        "",
        "| split | camera | clip | challenge | cue | variant | runs | cannot answer | BPCER (2 tries) | "
        "BPCER (1 try) | mean tries | failure reasons |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["bpcer"]:
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted(r["fail_reasons"].items())) or "-"
        mean = "n/a" if r["mean_tries"] is None else f"{r['mean_tries']:.2f}"
        lines.append(
            f"| {r['split']} | {r['camera']} | {r['clip']} | {r['challenge']} | "
            f"{'calibrated' if r['calibrated'] else 'uncalibrated'} | {r['variant']} | {r['runs']} | "
            f"{r['cannot_answer']} | {_pct(r['bpcer_2_tries'])} | {_pct(r['bpcer_1_try'])} | {mean} | {reasons} |"
        )
    lines += [
        "",
        "Clips that cannot answer a challenge at all (no annotated motion of a kind it asks for): "
        + (
            ", ".join(
                sorted(
                    {
                        f"{c['path'].split('/')[-1]} ({c['challenge']})"
                        for c in result["cannot_answer_by_annotation"]
                    }
                )
            )
            or "none"
        ),
        "",
        "## Attacks: APCER per attack type (worst case over the instruments of that type)",
        "",
        "| attack type | cue | instruments | runs | accepted | APCER pooled | APCER worst case | worst instrument | "
        "reasons |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["apcer"]:
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted(r["reasons"].items())) or "-"
        lines.append(
            f"| {r['attack_type']} | {'calibrated' if r['calibrated'] else 'uncalibrated'} | {r['instruments']} | "
            f"{r['runs']} | {r['accepted']} | {_pct(r['apcer_pooled'])} | {_pct(r['apcer_worst'])} | "
            f"{r['worst_instrument']} | {reasons} |"
        )
    lag = summary["lag_s"]
    lines += [
        "",
        "## Onset detection lag (detected minus annotated onset, straight playback)",
        "",
        f"n = {lag['n']} motions ({lag['missed']} not detected): min {lag['min']}, median {lag['p50']}, max "
        f"{lag['max']} s.",
        "",
        "## Cue calibration per camera",
        "",
        "| camera | samples | calibrated | from |",
        "|---|---|---|---|",
    ]
    for cam, c in sorted(result["calibration"].items()):
        lines.append(f"| {cam} | {c['samples']} | {c['calibrated']} | {c['source']} |")
    lines += ["", "## Not presentations (excluded)", ""]
    lines += [f"- {x['path']}: {x['note']}" for x in result["excluded"]]
    return "\n".join(lines) + "\n"
