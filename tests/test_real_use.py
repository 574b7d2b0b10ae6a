"""Your own data end to end (CSV in, model file, predictions out), self-describing model files,
and the MLP API for arbitrary labels (issue: real use)."""
import csv
import json

import numpy as np
import pytest

import loopgrad as lg
from loopgrad import datasets, tabular
from loopgrad.cli import main


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def _iris_rows():
    with np.load(datasets._BUILTIN) as f:
        X, y = f["iris_X"], f["iris_y"]
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    return X, names


@pytest.fixture
def iris_csv(tmp_path):
    X, names = _iris_rows()
    header = ["sepal length", "sepal width", "petal length", "petal width", "species"]
    return _write_csv(tmp_path / "iris.csv", header, [[*x, n] for x, n in zip(X.tolist(), names)]), X, names


def _json_out(capsys):
    out = capsys.readouterr().out
    return json.loads(out.strip().splitlines()[-1])


def test_csv_round_trip_with_string_labels(tmp_path, iris_csv, capsys):
    path, X, names = iris_csv
    model = str(tmp_path / "iris-model.npz")
    assert main(["train", "--csv", path, "--target", "species", "--hidden", "16", "--epochs", "60", "--lr", "1e-2",
                 "--save", model, "--json", "--quiet"]) == 0
    result = _json_out(capsys)
    assert result["task"] == "classification" and result["rows"] == {"train": 120, "test": 30}
    assert result["test"]["accuracy"] > 0.85
    assert result["test"]["confusion_matrix"]["labels"] == ["setosa", "versicolor", "virginica"]
    assert np.sum(result["test"]["confusion_matrix"]["counts"]) == 30

    # new rows without the target column, columns in another order: predictions by name
    new = _write_csv(tmp_path / "new.csv", ["petal width", "petal length", "sepal width", "sepal length"],
                     [[x[3], x[2], x[1], x[0]] for x in (X[:5] + 0.01).tolist()])
    preds = tmp_path / "preds.csv"
    assert main(["predict", model, "--input", new, "--output", str(preds), "--proba"]) == 0
    with open(preds) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["species", "p_setosa", "p_versicolor", "p_virginica"]
    assert len(rows) == 6 and all(r[0] in {"setosa", "versicolor", "virginica"} for r in rows[1:])
    assert all(abs(sum(float(p) for p in r[1:]) - 1) < 1e-4 for r in rows[1:])
    assert [r[0] for r in rows[1:]] == ["setosa"] * 5  # the first iris rows, nudged, are setosa

    # scoring the training file leaves out the rows the model trained on, and says so
    assert main(["predict", model, "--input", path, "--output", str(preds), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["training_rows"] == 120 and result["scored_rows"] == 30
    assert "120 of the 150 rows" in captured.err
    assert main(["info", model]) == 0
    info = capsys.readouterr().out
    assert "species" in info and "sepal length" in info and "split_seed: 0" in info


def test_csv_round_trip_regression(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, 3.0]
    y = 1000.0 + 200.0 * X[:, 0] - 15.0 * (X[:, 1] - 50.0) + rng.normal(0.0, 5.0, 600)
    path = _write_csv(tmp_path / "reg.csv", ["a", "b", "c", "price"], np.c_[X, y].tolist())
    model = str(tmp_path / "reg.npz")
    assert main(["train", "--csv", path, "--target", "price", "--hidden", "16", "--epochs", "60", "--lr", "1e-2",
                 "--save", model, "--json", "--quiet"]) == 0
    result = _json_out(capsys)
    assert result["task"] == "regression" and result["test"]["r2"] > 0.95
    new = _write_csv(tmp_path / "new.csv", ["a", "b", "c"], [[0.5, 40.0, 3.0], [-1.0, 60.0, 3.0]])
    preds = tmp_path / "p.csv"
    assert main(["predict", model, "--input", new, "--output", str(preds)]) == 0
    with open(preds) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["price"]
    truth = [1000 + 100 + 150, 1000 - 200 - 150]
    # in the target's own units: the scaling kept in the file is undone
    assert all(abs(float(r[0]) - t) < 0.1 * 300 for r, t in zip(rows[1:], truth))
    assert main(["predict", model, "--input", new, "--proba"]) == 2
    assert "--proba: a regression model predicts values" in capsys.readouterr().err


def test_predict_refuses_a_column_mismatch(tmp_path, iris_csv, capsys):
    path, X, names = iris_csv
    model = str(tmp_path / "m.npz")
    assert main(["train", "--csv", path, "--target", "species", "--epochs", "2", "--save", model, "--quiet"]) == 0
    capsys.readouterr()
    wrong = _write_csv(tmp_path / "wrong.csv", ["sepal length", "sepal width", "petal length", "colour"],
                       [[1, 2, 3, "red"]])
    assert main(["predict", model, "--input", wrong]) == 2
    err = capsys.readouterr().err
    assert "missing here: ['petal width']" in err and "Traceback" not in err
    extra = _write_csv(tmp_path / "extra.csv", ["sepal length", "sepal width", "petal length", "petal width", "id"],
                       [[5.1, 3.5, 1.4, 0.2, 7]])
    assert main(["predict", model, "--input", extra]) == 0
    assert "not trained on are ignored: ['id']" in capsys.readouterr().err
    npy = tmp_path / "three.npy"
    np.save(npy, np.zeros((2, 3)))
    assert main(["predict", model, "--input", str(npy)]) == 2
    assert "expects 4 feature columns" in capsys.readouterr().err


def test_bad_csv_values_are_named(tmp_path, capsys):
    path = _write_csv(tmp_path / "bad.csv", ["x", "city", "y"], [[1, "Paris", 0], [2, "Rome", 1]])
    assert main(["train", "--csv", path, "--target", "y", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "column 'city'" in err and "'Paris'" in err
    assert main(["train", "--csv", path, "--target", "label", "--quiet"]) == 2
    assert "column 'label' is not in" in capsys.readouterr().err


def test_the_split_seed_travels_with_the_model(tmp_path, capsys):
    """A model trained with --seed 3, scored without --seed, is scored on its own held-out rows:
    the score printed at training, never a higher one from rows it trained on."""
    model = str(tmp_path / "m.npz")  # wine: no two rows alike (iris has duplicate rows)
    assert main(["train", "--data", "wine", "--hidden", "8", "--epochs", "15", "--lr", "1e-2", "--seed", "3",
                 "--save", model, "--json", "--quiet"]) == 0
    trained = _json_out(capsys)["test"]["accuracy"]
    assert main(["predict", model, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["accuracy"] == pytest.approx(trained) and result["training_rows"] == 0
    assert "seed 3" in result["data"]
    # another split seed would mix training rows into the test split: they are left out
    assert main(["predict", model, "--seed", "0", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["training_rows"] > 0 and result["scored_rows"] == result["rows"] - result["training_rows"]
    assert "were used to train this model" in captured.err


def test_train_reads_npz_and_npy(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int) + 1  # labels 1 and 2
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.save(tmp_path / "d.npy", np.c_[X, y])
    for argv in (["--input", str(tmp_path / "d.npz")], ["--input", str(tmp_path / "d.npy"), "--target", "4"]):
        assert main(["train", *argv, "--epochs", "20", "--lr", "1e-2", "--json", "--quiet"]) == 0
        result = _json_out(capsys)
        assert result["model"]["sizes"][-1] == 1 and result["test"]["confusion_matrix"]["labels"] == [1, 2]
        assert result["test"]["accuracy"] > 0.85


def test_per_epoch_lines_when_not_a_terminal(tmp_path, capsys):
    assert main(["train", "--data", "iris", "--epochs", "3", "--hidden", "4"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/3 loss" in out and "val_acc" in out and "epoch 3/3" in out
    assert "confusion matrix" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and lg.__version__ in capsys.readouterr().out


# ---- the MLP API -----------------------------------------------------------------------------------

def test_arbitrary_labels_and_automatic_binary_output(rng):
    X = rng.normal(size=(300, 3))
    y = np.where(X[:, 0] - X[:, 1] > 0, "spam", "ham")
    model = lg.MLP.from_data(X, y, hidden=[8], dtype="float64")
    assert model.output == "sigmoid" and model.sizes[-1] == 1 and model.classes.tolist() == ["ham", "spam"]
    model.fit(X, y, epochs=40, optimizer=lg.Adam(1e-2), progress=False)
    assert set(model.predict(X)) <= {"ham", "spam"} and model.score(X, y) > 0.9
    proba = model.predict_proba(X)
    assert proba.shape == (300, 2) and np.allclose(np.exp(model.predict_log_proba(X)), proba)
    with pytest.raises(ValueError, match="label 'eggs' is not one of the model's classes"):
        model.score(X[:2], ["eggs", "ham"])
    # labels 1..K on a K-output softmax: learned as classes, predicted back as 1..K
    y3 = 1 + (X[:, 0] > 0) + (X[:, 1] > 0)
    m3 = lg.MLP([3, 8, 3], seed=1)
    m3.fit(X, y3, epochs=5, progress=False)
    assert m3.classes.tolist() == [1, 2, 3] and set(m3.predict(X)) <= {1, 2, 3}


def test_save_and_load_agree_on_the_name(tmp_path, rng):
    X = rng.normal(size=(40, 3))
    y = np.where(X[:, 0] > 0, "a", "b")
    model = lg.MLP.from_data(X, y, hidden=[4, 5], activation=["relu", "tanh"])
    model.fit(X, y, epochs=2, progress=False)
    model.metadata["note"] = "kept"
    model.save(tmp_path / "m")
    back = lg.MLP.load(tmp_path / "m")
    assert back.activations == ["relu", "tanh", "sigmoid"] and back.classes.tolist() == ["a", "b"]
    assert back.metadata == {"note": "kept"} and np.array_equal(back.theta, model.theta)
    assert (back.predict(X) == model.predict(X)).all()
    model.save(tmp_path / "n.npz")
    assert lg.MLP.load(tmp_path / "n").activations == model.activations  # the suffix may be left off


def test_per_layer_activations_train_and_match_their_gradients(rng):
    from loopgrad import gradcheck
    model = lg.MLP([3, 5, 4, 2], hidden=["tanh", "relu"], output="softmax")
    assert model.activations == ["tanh", "relu", "softmax"]
    X, y = rng.normal(size=(16, 3)), rng.integers(0, 2, 16)
    assert gradcheck(model, X, y) < 1e-6
    with pytest.raises(ValueError, match="one activation per hidden layer, 2 names"):
        lg.MLP([3, 5, 4, 2], hidden=["tanh"])


def test_history_to_dict_plot_and_summary(tmp_path, rng):
    X, y = rng.normal(size=(100, 3)), rng.integers(0, 2, 100)
    model = lg.MLP([3, 6, 2])
    history = model.fit(X, y, epochs=4, validation_split=0.2, progress=False, early_stopping=True, patience=2)
    d = history.to_dict()
    assert json.loads(json.dumps(d))["loss"] == history.loss and len(d["val_accuracy"]) == history.epochs
    fig = history.plot(tmp_path / "h.png")
    assert len(fig.axes) == 2 and (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    text = model.summary()
    assert "(3, 6)" in text and f"{model.n_params:,} parameters" in text


def test_model_files_with_bad_metadata_are_refused(tmp_path, rng):
    model = lg.MLP([3, 4, 2])
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        fields = dict(f)
    for key, value, words in (("metadata", np.str_("{not json"), "not valid JSON"),
                              ("metadata", np.str_('{"feature_names": ["a"]}'), "feature_names"),
                              ("classes", np.array(["a", "b", "c"]), "field 'classes'"),
                              ("training_rows", np.array([1.5]), "training_rows"),
                              ("activations", np.array(["relu", "nope"]), "activations")):
        np.savez(tmp_path / "bad.npz", **{**fields, key: value})
        with pytest.raises(ValueError, match=words):
            lg.MLP.load(tmp_path / "bad.npz")


def test_format_1_files_still_load(tmp_path):
    model = lg.MLP([3, 4, 2], hidden="tanh")
    np.savez(tmp_path / "old.npz", format_version=np.int64(1), sizes=np.array(model.sizes), hidden=np.str_("tanh"),
             output=np.str_("softmax"), dtype=np.str_("float64"), seed=np.int64(0), theta=model.theta)
    back = lg.MLP.load(tmp_path / "old.npz")
    assert back.activations == ["tanh", "softmax"] and back.metadata == {} and back.classes is None


def test_row_fingerprints_find_exactly_the_training_rows(rng):
    X = rng.normal(size=(500, 6))
    model = lg.MLP([6, 2])
    model.training_rows = np.unique(tabular.row_fingerprints(X[:300]))
    seen = tabular.seen_rows(model, np.r_[X[250:], -0.0 * X[:1] + X[:1]])
    assert seen[:50].all() and not seen[50:250].any() and seen[250]


def test_parquet_round_trip(tmp_path, iris_csv, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path, X, names = iris_csv
    frame = pd.read_csv(path)
    frame.to_parquet(tmp_path / "iris.parquet")
    model = str(tmp_path / "m.npz")
    assert main(["train", "--input", str(tmp_path / "iris.parquet"), "--target", "species", "--epochs", "30",
                 "--lr", "1e-2", "--save", model, "--json", "--quiet"]) == 0
    assert _json_out(capsys)["test"]["accuracy"] > 0.8
    frame.drop(columns="species").head(3).to_parquet(tmp_path / "new.parquet")
    assert main(["predict", model, "--input", str(tmp_path / "new.parquet"), "--output", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().splitlines()[1:] == ["setosa"] * 3


def test_target_without_a_file_is_refused_before_any_work(capsys):
    assert main(["train", "--data", "iris", "--target", "species", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--target/--validation" in err and "--csv FILE" in err
