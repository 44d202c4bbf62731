"""The datasets bundled with onnxkit: CSV files shipped as this package's data.

``datasets/make_datasets.py`` at the repository's root regenerates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class BundledDataset:
    """A bundled CSV and its label column."""

    name: str
    target: str
    description: str

    @property
    def path(self) -> Path:
        """Where the CSV lives (the package is installed as files, never zipped)."""
        return Path(str(resources.files(__name__) / f"{self.name}.csv"))


BUNDLED: dict[str, BundledDataset] = {
    d.name: d
    for d in (
        BundledDataset("breast_cancer", "target", "binary classification, 30 numeric features"),
        BundledDataset("iris", "species", "3-class classification, string labels"),
        BundledDataset(
            "customer_churn", "churned", "binary, numeric + categorical, 5% missing values"
        ),
        BundledDataset("diabetes", "progression", "regression, 10 numeric features"),
    )
}


def bundled(name: str) -> BundledDataset:
    """Look a bundled dataset up by name, with a readable error."""
    try:
        return BUNDLED[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(sorted(BUNDLED))}"
        ) from None
