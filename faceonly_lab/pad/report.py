"""The PAD evaluation as Markdown (docs/pad-report.md is one) and the figures behind it."""

from __future__ import annotations

from typing import Any

from faceonly_lab.pad.presenter import LEAD_IN_S, REACTION_MEDIAN_S, REACTION_RANGE_S, SCRUB_RANGE_S


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


METHOD = """## How it was measured

- **Terms (ISO/IEC 30107-3).** BPCER: share of bona fide presentations rejected. APCER: share of attack
  presentations accepted, per attack instrument (PAI); per attack type the worst instrument is reported, as the
  standard asks, next to the pooled rate. A presentation is one person (or attack) walking up up to `tries`
  times; it counts as accepted if any try passes, so both rates below are "within 2 tries" unless said.
- **How a recording answers a random prompt.** It cannot. The simulated presenter waits on the clip's own
  neutral frames (the longest stretch at least 0.4 s away from every annotated motion, played back and forth)
  and, when the terminal shows a prompt, reacts after a human reaction time drawn from the seed by playing one
  of the clip's own annotated segments of exactly that motion, starting a short lead-in before the annotated
  onset; then it waits again. It uses what a person has (the prompt on the screen and its own ability, the
  annotations) and never the decision: the terminal sees only pixels, and whether the motion is detected, big
  enough, 3D, and inside the onset window is measured on those pixels by the shipped pipeline (quality gate,
  tracker, liveness session with its pauses, onset window and retries, replay cues), with the models' outputs
  read from a per-frame cache of the same models. The seed chooses the challenge's step order and direction,
  its pauses, the reaction times and which segment answers.
- **Cannot answer.** A clip with no annotated motion of a kind a challenge asks for cannot answer that
  challenge: it is listed as such and not run. Inside a run, a prompt the clip has no segment for (a left
  turn when it only turns right) is not answered; if no try passes, the run is "cannot answer", not a failure.
  Each bona fide clip runs the shipped challenge (turn + blink) and each step alone, where it can answer them.
- **Annotations.** The blink video's blinks are the manual annotations shipped with it; the other clips'
  motions were proposed from the mesh-yaw and eye-opening traces and checked by eye on contact sheets (the
  manifest says which). Proposals from the models' own traces can miss what the models miss, so the blink
  video is the independent check of blink detection (`faceonly evaluate --blink`). A clip listed without
  motions (a held-out set listed by label) has them proposed by looser rules than the decision's, unchecked
  (faceonly_lab/pad/motions.py; see "Motions proposed" below when any were).
- **Attacks.** A still (print, photo, a screen showing a still) is held up by a responsive attacker: it
  sways, is tilted about its vertical axis by 40 deg on a turn prompt and flicked forward on a blink prompt,
  after a reaction time. A replayed video either PLAYS from a random point ignoring the prompts, or is
  SCRUBBED by a hand to its own matching motion (the replay's annotated segments) after the scrub time.
- **Robustness variants** of every bona fide clip: brightness x0.6 and x1.4, gamma 0.7 and 1.4, Gaussian blur
  (sigma 1.5 px), sensor noise (sigma 8 grey levels), half frame rate (every other frame).
- **Cue calibration.** Uncalibrated is the shipped state (the cue can add a step, never reject). Calibrated:
  the camera's live baseline learned from its bona fide material (the live stills marked `calibrate`, or 1 s
  chunks of the camera's bona fide clip); the attack figures never use attack data for it. For a bona fide
  clip calibrated on its own clip, its calibrated BPCER is optimistic and is shown only on the original pixels.
- **Splits.** The onset window and the blink and turn thresholds were set on the `tune` clips (the blink video
  and the head-turn clip, the project's tuning clips); every other clip is `test`, and its figures were not
  used to set anything. The window's upper bound is the assumed slowest reaction plus the onset detector's
  largest lag measured on the tune clips, plus a margin.
"""


def acceptance(summary: dict[str, Any]) -> list[str]:
    """The issue's acceptance figures, from the tables below."""
    rows = [r for r in summary["bpcer"] if not r["calibrated"] and r["bpcer_2_tries"] is not None]
    lines = ["## Acceptance at a glance", ""]
    for split in ("tune", "test"):
        part = [r for r in rows if r["split"] == split]
        if not part:
            continue
        worst = max(part, key=lambda r: r["bpcer_2_tries"])
        over = sorted(
            {
                f"{r['clip']} {r['challenge']} {r['variant']} ({_pct(r['bpcer_2_tries'])})"
                for r in part
                if r["bpcer_2_tries"] > 0.05
            }
        )
        lines.append(
            f"- Bona fide, {split} split, uncalibrated, within 2 tries: worst BPCER {_pct(worst['bpcer_2_tries'])} "
            f"({worst['clip']}, {worst['challenge']}, {worst['variant']}) over {len(part)} clip/challenge/variant "
            f"cells; above 5%: {', '.join(over) if over else 'none'}."
        )
    for r in summary["apcer"]:
        cue = "calibrated" if r["calibrated"] else "uncalibrated"
        lines.append(
            f"- {r['attack_type']} ({cue}): {r['accepted']} of {r['runs']} presentations accepted; APCER worst "
            f"instrument {_pct(r['apcer_worst'])}, pooled {_pct(r['apcer_pooled'])}."
        )
    return [*lines, ""]


def markdown(result: dict[str, Any], summary: dict[str, Any], command: str) -> str:
    cfg = result["config"]
    live = cfg["liveness"]
    lines = [
        "# Presentation-attack evaluation (ISO/IEC 30107-3 terms)",
        "",
        f"Made by: `{command}`",
        "",
        *acceptance(summary),
        f"Seeds per clip: {cfg['seeds']} (stills: {cfg['still_seeds']}); tries per person: {cfg['tries']}; "
        f"in-challenge retries per failed step: {live['step_retries']}; onset window "
        f"{live['onset_min_s']}-{live['onset_max_s']} s; pause before each prompt "
        f"{live['prompt_delay_min_s']}-{live['prompt_delay_max_s']} s. The terminal's challenge: "
        f"{', '.join(live['steps'])}; settings other than the shipped ones: "
        f"{', '.join(f'{k} = {v}' for k, v in cfg.get('changed', {}).items()) or 'none'}.",
        "",
        "Simulated presenter: waits on the clip's own neutral frames; on a prompt it plays one of the clip's "
        f"annotated segments of that motion, {LEAD_IN_S} s before the annotated onset, after a reaction time "
        f"(lognormal, median {REACTION_MEDIAN_S} s, {REACTION_RANGE_S[0]}-{REACTION_RANGE_S[1]} s: an assumption). "
        f"A scrubbing attacker needs {SCRUB_RANGE_S[0]}-{SCRUB_RANGE_S[1]} s (assumed). The decision sees only "
        "pixels.",
        "",
        METHOD,
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
        "Clips that cannot answer a challenge at all (no annotated or proposed motion of a kind it asks for): "
        + (
            ", ".join(
                sorted(
                    {
                        f"{c['path'].split('/')[-1]} ({c['challenge']}{', proposed' if c.get('by') == 'proposal' else ''})"
                        for c in result["cannot_answer_by_annotation"]
                    }
                )
            )
            or "none"
        ),
        "",
        *_proposals(result),
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


def _proposals(result: dict[str, Any]) -> list[str]:
    """The motions proposed from the clips' traces, and where the manifest annotates them too, how the two
    agree."""
    rows = result.get("motion_proposals", [])
    if not rows:
        return []
    lines = [
        "## Motions proposed from the clips' traces",
        "",
        f"Clips the manifest lists without motions (or all, with `--propose-motions`) answer with motions "
        f"proposed from the shipped models' traces, not checked by eye. Rules: {result['config']['motion_rules']}.",
        "",
        "| clip | label | split | proposed | blinks: annotated / proposed / agreeing | turns: annotated / proposed / agreeing |",
        "|---|---|---|---|---|---|",
    ]
    totals = {k: [0, 0, 0] for k in ("blink", "turn")}
    for r in rows:
        cells = []
        for kind in ("blink", "turn"):
            a = r.get("agreement", {}).get(kind)
            if a is None:
                cells.append("not annotated")
                continue
            counts = (a["annotated"], a["proposed"], a["agreeing"])
            totals[kind] = [t + c for t, c in zip(totals[kind], counts, strict=True)]
            cells.append(" / ".join(map(str, counts)))
        lines.append(
            f"| {r['path'].split('/')[-1]} | {r['label']} | {r['split']} | {r['proposed'] or '-'} | "
            f"{cells[0]} | {cells[1]} |"
        )
    if any("agreement" in r for r in rows):
        lines += [
            "",
            "All clips with annotations: "
            + "; ".join(
                f"{kind}s {t[2]} of {t[0]} annotated proposed too, {t[1] - t[2]} proposed beyond them"
                for kind, t in totals.items()
            )
            + ".",
        ]
    return [*lines, ""]
