import subprocess
import sys
import textwrap

import numpy as np
import pytest

from phototag.errors import InvalidInputError
from phototag.features.store import FeatureStore


def test_add_get_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.random((5, 4), dtype=np.float32)
    with FeatureStore(tmp_path, "enc", dim=4) as store:
        store.add([f"d{i}" for i in range(5)], vectors)
        got, found = store.get(["d3", "zz", "d0"])
        assert found.tolist() == [True, False, True]
        assert np.array_equal(got[[0, 2]], vectors[[3, 0]]) and not got[1].any()
    with FeatureStore(tmp_path, "enc", dim=4) as reopened:
        assert len(reopened) == 5
        assert np.array_equal(reopened.vectors(), vectors)


def test_duplicates_are_stored_once(tmp_path):
    with FeatureStore(tmp_path, "enc", dim=2) as store:
        store.add(["a", "a", "b"], np.array([[1, 1], [2, 2], [3, 3]], dtype=np.float32))
        store.add(["b", "c"], np.array([[9, 9], [4, 4]], dtype=np.float32))
        assert len(store) == 3
        assert store.get(["a", "b", "c"])[0].tolist() == [[1, 1], [3, 3], [4, 4]]


def test_float16_storage_and_meta_mismatch(tmp_path):
    with FeatureStore(tmp_path, "enc", dim=3, dtype="float16") as store:
        store.add(["a"], np.array([[0.1, 0.2, 0.3]]))
        assert store.vectors().dtype == np.float16
    with pytest.raises(InvalidInputError, match="delete this one"):
        FeatureStore(tmp_path, "enc", dim=4, dtype="float16")
    with pytest.raises(InvalidInputError, match="finite"):
        FeatureStore(tmp_path / "x", "e", dim=1).add(["a"], np.array([[np.nan]]))


def test_rows_written_without_index_entry_are_discarded(tmp_path):
    with FeatureStore(tmp_path, "enc", dim=2) as store:
        store.add(["a"], np.ones((1, 2), dtype=np.float32))
    # simulate a crash between writing rows and committing their index entries
    with (tmp_path / "enc" / "vectors.bin").open("ab") as handle:
        handle.write(np.full((3, 2), 7, dtype=np.float32).tobytes())
    with FeatureStore(tmp_path, "enc", dim=2) as store:
        assert len(store) == 1
        store.add(["b"], np.full((1, 2), 2, dtype=np.float32))
        assert store.get(["a", "b"])[0].tolist() == [[1, 1], [2, 2]]


@pytest.mark.integration
def test_store_survives_a_killed_writer(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, numpy as np
        from phototag.features.store import FeatureStore
        store = FeatureStore({str(tmp_path)!r}, "enc", dim=8)
        for i in range(1000):
            store.add([f"d{{i}}"], np.full((1, 8), i, dtype=np.float32))
            if i == 400:
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == -9
    with FeatureStore(tmp_path, "enc", dim=8) as store:
        assert len(store) == 401
        vectors, found = store.get([f"d{i}" for i in range(402)])
        assert found[:401].all() and not found[401]
        assert np.array_equal(vectors[:401, 0], np.arange(401))


@pytest.mark.integration
def test_concurrent_writers_and_a_reader_opening_mid_run_stay_consistent(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        from phototag.features.store import FeatureStore
        offset = int(sys.argv[1])
        for i in range(150):
            store = FeatureStore({str(tmp_path)!r}, "enc", dim=16)  # reopened each time
            store.add([f"d{{offset + i}}"], np.full((1, 16), offset + i, dtype=np.float32))
            store.close()
        """
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(o)]) for o in (0, 1000)]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    with FeatureStore(tmp_path, "enc", dim=16) as store:
        assert len(store) == 300
        digests = [f"d{i}" for i in range(150)] + [f"d{1000 + i}" for i in range(150)]
        vectors, found = store.get(digests)
        assert found.all()
        assert np.array_equal(vectors[:, 0], [int(d[1:]) for d in digests])
