"""Installs tfp_mnf and compiles its custom TensorFlow ops against the installed TensorFlow."""

from setuptools import find_packages, setup

setup(
    name="tfp-mnf",
    version="0.1.0",
    description="Multiplicative Normalizing Flows (MNF) Bayesian layers for TensorFlow Probability",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["tfp_mnf", "tfp_mnf.*"]),
    install_requires=[
        "tensorflow~=2.21.0",
        "tensorflow-probability~=0.25.0",
        "tf-keras~=2.21.0",
        "numpy",
        "absl-py",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "scikit-learn", "ruff"]},
)
