"""Writes an MLServer model folder serving a scikit-learn iris classifier (argument: folder)."""
import json
import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

folder = Path(sys.argv[1])
model_dir = folder / "iris"
model_dir.mkdir(parents=True, exist_ok=True)
x, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(x, y), model_dir / "model.joblib")
(model_dir / "model-settings.json").write_text(json.dumps({
    "name": "iris",
    "implementation": "mlserver_sklearn.SKLearnModel",
    "parameters": {"uri": "./model.joblib", "version": "v1"},
}))
print("ok")
