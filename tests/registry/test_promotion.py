"""Promotions under concurrency, on SQLite and PostgreSQL: each one sees the alias as the last one left it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from shipyard.registry import Registry

_PROMOTE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from shipyard.registry import Registry
    go, ready, ref = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    with Registry.from_env() as registry:
        registry.get(ref)  # connected and migrated before the start signal
        ready.touch()
        while not go.exists():
            time.sleep(0.002)
        registry.promote(ref, "race", reason="race").raise_for_refusal()
    """
)
POLICY = 'aliases:\n  race:\n    require: ["!has(current) || candidate.version != current.version"]\n'


def test_concurrent_promotions_form_one_clean_chain(
    registry: Registry, model_dir: Path, tmp_path: Path, shipyard_home: Path
) -> None:
    (shipyard_home / "policies.yaml").write_text(POLICY)
    for _ in range(6):
        registry.register("m", model_dir)
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _PROMOTE, str(go), str(tmp_path / f"ready-{n}"), f"m:{n}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(1, 7)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 6 and time.monotonic() < deadline:
        assert all(child.poll() is None for child in children), [c.stderr.read() for c in children if c.stderr]
        time.sleep(0.02)
    go.touch()
    errors = [child.communicate(timeout=60)[1] for child in children]
    assert [child.returncode for child in children] == [0] * 6, errors
    moves = [(e.from_version, e.version) for e in registry.history("m") if e.action == "promote"]
    assert sorted(to for _, to in moves) == [1, 2, 3, 4, 5, 6]
    chain = [to for _, to in moves]
    assert [origin for origin, _ in moves] == [None, *chain[:-1]], moves  # each saw the one before it
    assert registry.get("m@race").version == chain[-1]
