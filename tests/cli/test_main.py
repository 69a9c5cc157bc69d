"""``zemosaic_xp.cli.main``: what it arranges for the process's exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_exit_freezes_the_collector_and_still_runs_finalisers(tmp_path):
    # At exit the collector is frozen before the interpreter's shutdown, which then skips
    # its garbage collections (issue 14: ~0.45 s of a grid run); weakref.finalize
    # callbacks, the other atexit handlers and buffered output still happen.
    marker = tmp_path / "finalised.txt"
    script = textwrap.dedent(f"""
        import atexit, gc, sys, weakref
        from zemosaic_xp.cli import main

        class Holder:
            pass

        keep = Holder()
        weakref.finalize(keep, lambda: open({str(marker)!r}, "w").write("finalised"))
        # Registered before main's handler, so it runs after it (atexit is last in, first out).
        atexit.register(lambda: sys.stderr.write(f"frozen at exit: {{gc.get_freeze_count() > 0}}"))
        print("before main", end="")  # left in the buffer
        code = [main([]) for _ in range(3)][-1]  # main registers its handler once, however often it runs
        assert gc.get_freeze_count() == 0  # nothing frozen while the process works
        sys.exit(code)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2  # no sub-command
    assert run.stdout == "before main"
    assert "usage: zemosaic-xp" in run.stderr
    assert run.stderr.endswith("frozen at exit: True")
    assert marker.read_text() == "finalised"


def test_commands_run_with_fewer_collections(monkeypatch):
    # The sub-command runs with the raised thresholds; main restores the caller's,
    # also when the command fails.
    import gc

    import zemosaic_xp.cli as cli

    seen = []

    def command(args):
        seen.append(gc.get_threshold())
        raise ValueError("bad input")

    build = cli._build_parser

    def parser_with_command():
        parser = build()
        parser.set_defaults(func=command)
        return parser

    monkeypatch.setattr(cli, "_build_parser", parser_with_command)
    before = gc.get_threshold()
    assert cli.main(["--quiet"]) == 2  # the ValueError: one line, exit code 2
    assert seen == [cli._COMMAND_GC_THRESHOLDS]
    assert gc.get_threshold() == before


def test_the_process_command_keeps_the_raised_thresholds(tmp_path):
    # main() reading sys.argv is the process's own command: it leaves the raised thresholds
    # in place (restoring them runs a full collection over every library object, ~0.06 s,
    # just before the process ends); main(argv) called from Python restores them.
    script = textwrap.dedent("""
        import gc, sys
        import zemosaic_xp.cli as cli

        before = gc.get_threshold()
        sys.argv = ["zemosaic-xp", "--quiet"]
        cli._build_parser = (lambda build: lambda: build_with(build()))(cli._build_parser)

        def build_with(parser):
            parser.set_defaults(func=lambda args: 0)
            return parser

        assert cli.main(["--quiet"]) == 0
        assert gc.get_threshold() == before != cli._COMMAND_GC_THRESHOLDS
        assert cli.main() == 0
        print(gc.get_threshold() == cli._COMMAND_GC_THRESHOLDS, end="")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "True"
