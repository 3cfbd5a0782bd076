"""The kit for plugin authors: an example plugin installed from its own package, `hub
plugins`, the testing helpers, and every hook tested and documented."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub import hookspecs
from hub.plugins import destination_connectors, get_plugin_manager
from tests.conftest import REDIS_URL

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "hub-jsonl"
HOOKS = [
    name
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("register_")
]

pytestmark = pytest.mark.subprocess


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HUB_TEST_REDIS_URL": REDIS_URL},
    )


@pytest.fixture(scope="module")
def installed_example():
    """The example plugin, pip-installed into this environment for the module's tests."""
    done = run("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    yield
    run("-m", "pip", "uninstall", "--quiet", "--yes", "hub-jsonl")


def test_an_installed_plugin_is_loaded_from_its_entry_point(installed_example) -> None:
    assert "jsonl" in destination_connectors(get_plugin_manager())
    assert "jsonl" not in destination_connectors(get_plugin_manager(load_entrypoints=False))


def test_hub_plugins_lists_plugins_versions_and_hooks(installed_example) -> None:
    done = run("-m", "hub", "plugins", "--json")
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)}
    assert plugins["jsonl"]["version"] == "hub-jsonl 1.0.0"
    assert plugins["jsonl"]["hooks"] == ["register_destinations"]
    assert plugins["jsonl"]["connectors"]["destinations"] == ["jsonl"]
    assert plugins["connectors.calendly"]["connectors"]["sources"] == ["calendly"]
    text = run("-m", "hub", "plugins").stdout
    assert "hub-jsonl 1.0.0" in text and "register_destinations" in text


def test_the_example_passes_its_own_tests_with_the_hub_testing_helpers(installed_example):
    done = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=EXAMPLE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook) -> None:
    signature = inspect.signature(getattr(hookspecs, hook))
    text = (ROOT / "docs" / "connectors.md").read_text()
    returns = str(signature.return_annotation).strip("'")
    assert f"def {hook}{str(signature).split(' ->')[0]} -> {returns}" in text


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook) -> None:
    here = Path(__file__).name
    tested = [
        p
        for p in (ROOT / "tests").glob("test_*.py")
        if p.name != here and f"def {hook}(" in p.read_text()
    ]
    assert tested, f"no test implements {hook}"
