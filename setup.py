from setuptools import find_packages, setup

with open("spike/version.py") as f:
    version = f.read().split("=")[1].strip().strip('"')

setup(
    name="spike",
    version=version,
    description="Run Nengo models across worker processes and hosts, "
    "with the same results as nengo.Simulator",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["spike", "spike.*"]),
    python_requires=">=3.10",
    install_requires=[
        "nengo==4.1.*",
        "numpy>=2.0,<2.4",  # nengo 4.1 breaks on numpy 2.4; pytensor 3 needs 2.0
        "pyzmq>=25",
        "msgpack>=1.0",
        "cloudpickle>=2.0",
        "paramiko>=3.0",  # starting host daemons over SSH (ssh=True, --ssh)
        "pymetis>=2023.1",  # graph partitions of the actors (spike.plan.placement)
        "matplotlib>=3.5",
        # compiled workers (theano-pymc cannot run on Python 3.11 with a current
        # numpy); PyTensor 3 compiles with Numba, whose dot products use scipy's BLAS
        "pytensor==3.0.*",
        "scipy>=1.10",
    ],
    extras_require={
        # nengo's pytest plugin needs pytest<8; nengo's own tests use allclose/plt/rng
        "test": [
            "pytest>=7,<8",
            "pytest-xdist>=3",
            "pytest-allclose>=1.0",
            "pytest-plt>=1.1",
            "pytest-rng>=1.0",
            "scipy>=1.7",
        ],
    },
    entry_points={
        "console_scripts": ["spike=spike.tools.cli:main", "spike-daemon=spike.cluster.daemon:main"],
        "nengo.backends": ["spike=spike:Simulator"],
    },
)
