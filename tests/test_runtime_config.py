"""Remote config is an allow-list: each field declares whether it is settable remotely and how it
applies; stored overrides pass the same check at start and are set aside when start fails with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.config import Config, ConfigError
from device.runtime.runtime_config import OVERRIDES_FILE, REJECTED_FILE, RULES, RuntimeConfig, remote_problems

# Every key that weakens liveness, recognition, durability or privacy, or cuts the terminal off.
FORBIDDEN = [
    {"vision": {"liveness": {"policy": "off"}}},
    {"vision": {"liveness": {"policy": "passive"}}},
    {"vision": {"liveness": {"planarity_threshold": 0.2}}},
    {"vision": {"liveness": {"replay_risk_threshold": 1.0}}},
    {"vision": {"liveness": {"replay_risk_action": "flag"}}},
    {"vision": {"liveness": {"seed": 1}}},
    {"vision": {"liveness": {"steps": ["blink"]}}},
    {"vision": {"source": "replay:/nonexistent"}},
    {"vision": {"detector": "full_range"}},
    {"vision": {"detector_min_score": 0.01}},
    {"vision": {"quality": {"min_face_px": 16}}},
    {"vision": {"quality": {"min_sharpness": 0}}},
    {"identity": {"false_accept_per_search": 0.1}},
    {"identity": {"gallery_public_key_file": "/tmp/attacker.pub"}},
    {"identity": {"send_embedding": "always"}},
    {"identity": {"send_thumbnail": "always"}},
    {"gate": {"kind": "mqtt"}},
    {"gate": {"max_decision_age_s": 1.0}},
    {"outbox": {"max_age_s": 0.001}},
    {"outbox": {"max_events": 1}},
    {"outbox": {"max_bytes": 1024}},
    {"privacy": {"thumbnail_size": 224}},
    {"mqtt": {"event_expiry_s": 10}},
    {"control": {"allow_unsigned": True}},
    {"terminal_id": "x"},
    {"service": {"state_dir": "/tmp"}},
]


def test_the_default_is_not_settable_and_the_allow_list_is_short() -> None:
    allowed = sorted(k for k, r in RULES.items() if r.remote)
    assert allowed == [
        "service.health_interval_s",
        "service.num_threads",
        "service.stop_flush_s",
        "vision.camera.retry_initial_s",
        "vision.camera.retry_max_s",
    ]
    assert all(
        not r.remote for k, r in RULES.items() if k.startswith(("vision.liveness", "outbox", "privacy"))
    )


@pytest.mark.parametrize("changes", FORBIDDEN, ids=lambda c: json.dumps(c))
def test_forbidden_keys_are_refused_and_nothing_is_stored(tmp_path: Path, changes: dict) -> None:
    rt = RuntimeConfig(Config(service={"state_dir": str(tmp_path)}))
    before = rt.current
    with pytest.raises(ConfigError) as exc:
        rt.apply(changes)
    assert "not settable remotely" in exc.value.problems[0]
    assert rt.current is before and not (tmp_path / OVERRIDES_FILE).exists()


def test_remote_bounds_are_tighter_than_the_file(tmp_path: Path) -> None:
    assert remote_problems({"service": {"health_interval_s": 0.2}})  # the file may, the broker may not
    Config(service={"health_interval_s": 0.2})
    assert remote_problems({"service": {"stop_flush_s": 60}})
    assert remote_problems({"service": {"health_interval_s": 5}}) == []


def test_live_and_restart_keys(tmp_path: Path) -> None:
    rt = RuntimeConfig(Config(service={"state_dir": str(tmp_path)}))
    result = rt.apply({"service": {"health_interval_s": 5}, "vision": {"camera": {"retry_max_s": 20}}})
    assert result["restart_required"] == ["vision.camera.retry_max_s"]


def _store(state: Path, overrides: dict) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / OVERRIDES_FILE).write_text(json.dumps({"version": 3, "overrides": overrides}))


def test_stored_overrides_pass_the_same_check_at_start(tmp_path: Path) -> None:
    # E.g. written by an older version that allowed more, or by hand.
    _store(tmp_path, {"vision": {"liveness": {"policy": "off"}}, "service": {"health_interval_s": 5}})
    rt = RuntimeConfig(Config(service={"state_dir": str(tmp_path)}))
    assert rt.current.vision.liveness.policy == "challenge"
    assert rt.current.service.health_interval_s == 10.0 and rt.version is None
    assert "vision.liveness.policy" in (rt.problem or "")


def test_start_sets_stored_overrides_aside_when_start_fails_with_them(tmp_path: Path) -> None:
    _store(tmp_path, {"service": {"num_threads": 3}})
    rt = RuntimeConfig(Config(service={"state_dir": str(tmp_path)}))
    assert rt.current.service.num_threads == 3
    seen: list[int] = []

    def build(cfg: Config) -> str:
        seen.append(cfg.service.num_threads)
        if cfg.service.num_threads == 3:
            raise ValueError("cannot open the thing")
        return "started"

    assert rt.start(build, (ValueError,)) == "started"
    assert seen == [3, 1] and rt.overrides == {} and rt.version is None
    assert "cannot open the thing" in (rt.problem or "")
    assert (tmp_path / REJECTED_FILE).exists() and not (tmp_path / OVERRIDES_FILE).exists()
    # A failure without overrides is the file's own: reported, not hidden.
    with pytest.raises(ValueError):
        RuntimeConfig(Config(service={"state_dir": str(tmp_path), "num_threads": 3})).start(
            build, (ValueError,)
        )


def test_a_file_reload_reports_the_keys_that_wait_for_a_restart(tmp_path: Path) -> None:
    """SIGHUP's rebase compares the new file with the RUNNING config: a restart-only key it changed is named
    (comparing with the new file itself named nothing, and the log said a dead setting had changed)."""
    rt = RuntimeConfig(Config(service={"state_dir": str(tmp_path)}))
    edited = Config(
        service={"state_dir": str(tmp_path), "health_interval_s": 7}, homeassistant={"enabled": True}
    )
    assert rt.rebase(edited) == ["homeassistant.enabled"]
    assert rt.changed_keys(Config(service={"state_dir": str(tmp_path)})) == [
        "homeassistant.enabled",
        "service.health_interval_s",
    ]
