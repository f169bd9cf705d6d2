"""`fico plugin new` writes a package that installs and passes `fico check` and its own tests;
plugins/_template is its output; `fico check` and the conformance kit catch what evaluation would.

The end-to-end case installs into a temporary --target folder (never into the shared environment)
and runs everything in subprocesses, as an author would from a fresh clone.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_registry_plugins import make_dist

from fico_registry.cli.scaffold import API_MODULE, KINDS, TESTING_MODULE, core_requirement, render, write_plugin
from fico_registry.errors import OptionError

REPO = Path(__file__).resolve().parents[1]
# "fico_registry" itself: the top-level names (load_model, evaluate)
ALLOWED_CORE_IMPORTS = {API_MODULE, TESTING_MODULE, "fico_registry.errors", "fico_registry"}


def _env(site: Path | None = None, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FICO_")}
    if site is not None:
        environ["PYTHONPATH"] = str(site) + os.pathsep + environ.get("PYTHONPATH", "")
    if site is not None:
        environ["FICO_HOME"] = str(site.parent / "fico-home")
    environ.update(extra)
    return environ


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_the_template_folder_is_the_scaffold_output() -> None:
    template = REPO / "plugins" / "_template"
    on_disk = {
        str(p.relative_to(template)): p.read_text()
        for p in template.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
    }
    assert on_disk == render("example", "continuous"), "regenerate: fico plugin new example --path plugins/_template"


@pytest.mark.parametrize("kind", KINDS)
def test_generated_code_imports_only_the_plugin_api(kind: str) -> None:
    for path, text in render("acme", kind).items():
        if not path.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(text)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            core = [m for m in modules if m.split(".")[0] == "fico_registry"]
            assert set(core) <= ALLOWED_CORE_IMPORTS, (path, core)


def test_names_and_the_core_range() -> None:
    files = render("fico-acme", "binary")
    assert 'name = "fico-acme"' in files["pyproject.toml"] and 'acme = "fico_acme.plugin"' in files["pyproject.toml"]
    assert f'"{core_requirement()}"' in files["pyproject.toml"]
    assert core_requirement() == "fico-registry>=0.1,<0.2"
    assert 'name="acme-hash"' in files["src/fico_acme/plugin.py"]
    with pytest.raises(OptionError, match="lower-case"):
        render("Acme!", "binary")
    with pytest.raises(OptionError, match="--kind"):
        render("acme", "fusion")


def test_it_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "keep.txt").write_text("mine")
    with pytest.raises(OptionError, match="not empty"):
        write_plugin("acme", tmp_path / "acme")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_scaffold_installs_and_passes_fico_check_and_its_own_tests(tmp_path: Path, kind: str) -> None:
    env = _env()
    new = _run([sys.executable, "-m", "fico_registry", "plugin", "new", "acme", "--kind", kind], env, cwd=tmp_path)
    assert new.returncode == 0, new.stderr
    site = tmp_path / "site"
    install = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(tmp_path / "acme"),
        ],
        env,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = _env(site)
    check = _run([sys.executable, "-m", "fico_registry", "check", "acme"], env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "check_plugin('acme')" in check.stdout and "2 passed, 0 failed" in check.stdout
    pytest_args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "acme" / "tests")]
    tests = _run(pytest_args, env, cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert "3 passed" in tests.stdout


LIST_ONLY_ENCODER = """
import torch


class Encoder:
    dim = 4

    def preprocess_image(self, image):
        return torch.zeros(3, 8, 8) + image.size[0]

    def encode_images(self, batch):  # only lists: evaluation's stacked tensors crash here
        return torch.nn.functional.normalize(torch.tensor([[float(im.size[0]), 1.0, 2.0, 3.0] for im in batch]), dim=-1)

    def encode_texts(self, batch):
        return torch.nn.functional.normalize(torch.tensor([[float(len(t)), 1.0, 2.0, 3.0] for t in batch]), dim=-1)


def build(*, spec, config, checkpoint, device):
    return Encoder()
"""
LIST_ONLY_CARD = """
from fico_registry import ModelSpec, hookimpl

@hookimpl
def fico_models(register):
    register(ModelSpec(name="list-only", family="vlp", output="continuous", dim=4, factory="list_only_model:build",
                       configs={"default": {}, "tiny": {}}, paper="test", license="MIT"))
"""


@pytest.fixture(scope="module")
def list_only_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("list-only-site")
    make_dist(root, "fake-list-only", "fake_list_only_plugin", LIST_ONLY_CARD)
    (root / "list_only_model.py").write_text(textwrap.dedent(LIST_ONLY_ENCODER))
    return root


def test_the_kit_feeds_the_stacked_tensors_evaluation_passes(list_only_site: Path) -> None:
    out = _run([sys.executable, "-m", "fico_registry", "check", "list-only"], _env(list_only_site))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL  check_model('list-only')" in out.stdout
    assert "stacked preprocess_image tensor (4, 3, 8, 8)" in out.stdout and "accept a (B, 3, H, W) tensor" in out.stdout


def test_fico_check_of_an_unknown_name_is_one_line(list_only_site: Path) -> None:
    out = _run([sys.executable, "-m", "fico_registry", "check", "list-onyl"], _env(list_only_site))
    assert out.returncode == 2 and "Did you mean: list-only" in out.stderr and "Traceback" not in out.stderr


def test_check_model_infers_the_callers_distribution(tmp_path: Path, list_only_site: Path) -> None:
    # a test file in fake-list-only's project checking a name another distribution owns fails
    project = tmp_path / "fake-list-only"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "fake-list-only"\n[project.entry-points.fico_registry]\nx = "x.plugin"\n'
    )
    (project / "tests" / "check_it.py").write_text(
        "from fico_registry.plugin_api.testing import check_model\ncheck_model('reference-dual')\n"
    )
    out = _run([sys.executable, str(project / "tests" / "check_it.py")], _env(list_only_site))
    assert out.returncode != 0
    assert "resolves to the card registered by fico-registry, not by fake-list-only" in out.stderr
    # the same file in a project that is not a plugin (like the core's tests) infers nothing
    (project / "pyproject.toml").write_text('[project]\nname = "not-a-plugin"\n')
    assert _run([sys.executable, str(project / "tests" / "check_it.py")], _env(list_only_site)).returncode == 0


def test_fico_check_runs_the_kit_on_a_model() -> None:
    from click.testing import CliRunner

    from fico_registry.cli import cli

    out = CliRunner().invoke(cli, ["check", "fico-registry:reference-dual"], obj={})
    assert out.exit_code == 0, out.output
    assert "ok    check_model('fico-registry:reference-dual') [fico-registry]" in out.output
    assert "1 passed, 0 failed" in out.output


def test_sample_batches_cover_feature_inputs() -> None:
    from fico_registry import list_feature_pipelines
    from fico_registry.plugin_api.testing import sample_batch

    regions = sample_batch("regions", 3)
    assert regions.shape == (3, 36, 2048) and str(regions.dtype) == "float32" and (regions >= 0).all()
    for pipeline in list_feature_pipelines():  # vgg19-fc7, doc2vec when fico-features is installed
        assert sample_batch(pipeline.name, 2).shape == (2, pipeline.dim)
    with pytest.raises(ValueError, match="pass image_batch="):
        sample_batch("no-such-input")
