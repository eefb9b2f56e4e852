"""Build hook for what setup.cfg cannot say: the top-level ``seed_data/`` folder ships inside
the package as ``meds3/seed_data/`` (found at run time by :mod:`meds3.shipped`). Everything
else (metadata, dependencies, extras) is in setup.cfg."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["meds3", "meds3.*"]) + ["meds3.seed_data"],
    package_dir={"meds3.seed_data": "seed_data"},
    package_data={"meds3.seed_data": ["*.jsonl", "*.yaml", "*.md"]},
)
