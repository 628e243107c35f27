"""fastrnn inside an engine: the thread budget it takes from the environment, the
thread-local limit (``fastrnn.threads``), threadpoolctl's control of it, the host's malloc
settings, and the list of what ``import fastrnn`` changed (``fastrnn.process_settings``).

Settings read at import are tested in fresh interpreters (``subprocess``).
"""

import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import _blas, _engine, _runtime

CORES = _runtime.available_cores()
# this environment without what the tests set: the variables a parent process (CI, a
# developer's shell, this process's own import of fastrnn) may have set
_CLEAN = {k: v for k, v in os.environ.items()
          if k not in ("FASTRNN_NUM_THREADS", "OMP_NUM_THREADS", "FASTRNN_MALLOC_TUNING",
                       "GLIBC_TUNABLES", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                       "FASTRNN_BLAS_TUNING", "FASTRNN_THREADPOOLCTL")
          and not k.startswith("MALLOC_")}


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the clean environment plus ``env``."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**_CLEAN, **env}, timeout=120)


_REPORT = """
    import fastrnn
    k = fastrnn.process_settings()["kernel_threads"]
    print(fastrnn.get_num_threads(), k["at_import"], k["source"])
"""


def budget(**env: str) -> tuple[int, str, str]:
    """``(get_num_threads(), source, stderr)`` in a fresh process with ``env``."""
    out = run_python(_REPORT, **env)
    assert out.returncode == 0, out.stderr
    n, at_import, source = out.stdout.split(maxsplit=2)
    assert n == at_import
    return int(n), source.strip(), out.stderr


# ------------------------------------------------------------------ the budget at import

def test_without_variables_the_budget_is_the_affinity_mask():
    assert budget()[:2] == (CORES, "affinity mask")


@pytest.mark.parametrize("env, expected", [
    ({"OMP_NUM_THREADS": "1"}, (1, "OMP_NUM_THREADS")),
    ({"OMP_NUM_THREADS": " 1,2 "}, (1, "OMP_NUM_THREADS")),       # the first level's value
    ({"OMP_NUM_THREADS": "64"}, (CORES, "OMP_NUM_THREADS")),      # capped at the cores
    ({"FASTRNN_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}, (1, "FASTRNN_NUM_THREADS")),
    ({"FASTRNN_NUM_THREADS": "", "OMP_NUM_THREADS": "1"}, (1, "OMP_NUM_THREADS")),
])
def test_the_budget_comes_from_fastrnn_num_threads_then_omp_num_threads(env, expected):
    n, source, stderr = budget(**env)
    assert (n, source) == expected
    assert "fastrnn ignores" not in stderr


@pytest.mark.parametrize("env, expected", [
    ({"OMP_NUM_THREADS": "lots"}, (CORES, "affinity mask")),
    ({"OMP_NUM_THREADS": "0"}, (CORES, "affinity mask")),
    ({"FASTRNN_NUM_THREADS": "-2"}, (CORES, "affinity mask")),
    ({"FASTRNN_NUM_THREADS": "1.5", "OMP_NUM_THREADS": "1"}, (1, "OMP_NUM_THREADS")),
])
def test_an_invalid_variable_is_skipped_with_a_warning(env, expected):
    n, source, stderr = budget(**env)
    assert (n, source) == expected
    name = next(iter(env))
    assert f"fastrnn ignores {name}={env[name]!r}" in stderr


def test_budget_from_environment_reads_the_mapping_it_is_given():
    assert _runtime.budget_from_environment({}) == (CORES, "affinity mask")
    assert _runtime.budget_from_environment({"OMP_NUM_THREADS": "1,1"}) == \
        (1, "OMP_NUM_THREADS")
    with pytest.warns(RuntimeWarning, match="FASTRNN_NUM_THREADS='x'"):
        assert _runtime.budget_from_environment({"FASTRNN_NUM_THREADS": "x"}) == \
            (CORES, "affinity mask")


# ------------------------------------------------------------------ fastrnn.threads

@pytest.fixture
def process_threads():
    """Restores the process-wide value after the test."""
    before = _blas.process_num_threads()
    yield before
    _blas.set_num_threads(before)


def test_a_block_limits_this_thread_and_restores_on_exit(process_threads):
    fastrnn.set_num_threads(CORES)
    with fastrnn.threads(1):
        assert fastrnn.get_num_threads() == 1
        assert _blas.process_num_threads() == CORES        # the process-wide value stays
        fastrnn.set_num_threads(1)                         # changes the default only
        assert _blas.thread_limit() == 1
        fastrnn.set_num_threads(CORES)
    assert fastrnn.get_num_threads() == CORES
    assert _blas.thread_limit() == 0


def test_blocks_nest_and_an_exception_restores_the_outer_limit(process_threads):
    fastrnn.set_num_threads(1)
    with fastrnn.threads(CORES):
        assert fastrnn.get_num_threads() == CORES
        with fastrnn.threads(1):
            assert fastrnn.get_num_threads() == 1
            with pytest.raises(KeyError):
                with fastrnn.threads(CORES):
                    raise KeyError("inside")
            assert fastrnn.get_num_threads() == 1
        assert fastrnn.get_num_threads() == CORES
    assert fastrnn.get_num_threads() == 1 and _blas.thread_limit() == 0


def test_a_block_is_capped_at_the_cores_and_checks_its_argument():
    with fastrnn.threads(CORES + 5):
        assert fastrnn.get_num_threads() == CORES
    for bad in (0, -1, 1.5, True, "2", None):
        with pytest.raises(ValueError, match="positive int"):
            with fastrnn.threads(bad):
                pass
    assert _blas.thread_limit() == 0
    with pytest.raises(ValueError, match=">= 0"):
        _blas.set_thread_limit(-1)


def test_threads_works_as_a_decorator():
    @fastrnn.threads(1)
    def inside():
        return fastrnn.get_num_threads()

    assert inside() == 1 and inside() == 1
    assert _blas.thread_limit() == 0


def test_two_python_threads_each_keep_their_own_limit(process_threads):
    """Two threads in blocks of 1 and of all the cores, and a third outside any block,
    run an LSTM large enough to split at the same time: each sees its own count, splits
    its time loop into that many parts and gets what the same count gives alone."""
    fastrnn.set_num_threads(CORES)
    lstm = fastrnn.LSTM(16, 64, seed=0)
    x = np.random.default_rng(0).standard_normal((30, 64, 16)).astype(np.float32)
    nact = _engine.active_rows(None, 30, 64)
    expected = {}
    for k in (1, CORES):
        with fastrnn.threads(k):
            expected[k] = lstm(x)[0]
    limits = {0: 1, 1: CORES, 2: None}               # None: no block
    seen, errors = {}, []
    barrier = threading.Barrier(3)

    def work(i):
        try:
            limit = limits[i]
            if limit is None:
                barrier.wait()
                seen[i] = (fastrnn.get_num_threads(),
                           len(_engine.row_bounds(nact, 64, 64, 4)) - 1)
                outs = [lstm(x)[0] for _ in range(5)]
                barrier.wait()
                np.testing.assert_array_equal(outs[-1], expected[CORES])
                return
            with fastrnn.threads(limit):
                barrier.wait()                       # all three inside at once
                seen[i] = (fastrnn.get_num_threads(),
                           len(_engine.row_bounds(nact, 64, 64, 4)) - 1)
                outs = [lstm(x)[0] for _ in range(5)]
                barrier.wait()
            for out in outs:
                np.testing.assert_array_equal(out, expected[limit])
        except BaseException as err:                 # reported in the main thread
            errors.append(err)
            barrier.abort()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    assert seen == {0: (1, 1), 1: (CORES, CORES), 2: (CORES, CORES)}
    assert _blas.thread_limit() == 0


def test_a_thread_started_in_a_block_does_not_inherit_it(process_threads):
    fastrnn.set_num_threads(CORES)
    seen = []
    with fastrnn.threads(1):
        t = threading.Thread(target=lambda: seen.append(fastrnn.get_num_threads()))
        t.start()
        t.join()
    assert seen == [CORES]


_FORK_IN_A_BLOCK = """
    import os
    import numpy as np
    import fastrnn
    from fastrnn import _blas
    _blas.set_num_threads(2)                   # a team of two even on one core
    lstm = fastrnn.LSTM(64, 128, seed=0)
    x = np.ones((20, 64, 64), np.float32)
    want = lstm(x)[0]
    with fastrnn.threads(1):
        _blas.set_thread_limit(2)              # as threads(2) where there are 2 cores
        pid = os.fork()
        if pid == 0:
            ok = float(np.abs(lstm(x)[0] - want).max()) < 1e-5
            ok = ok and fastrnn.get_num_threads() == 1 and _blas.forked_serial()
            with fastrnn.threads(1):
                pass                           # restores the limit of 2, as 1
            ok = ok and fastrnn.get_num_threads() == 1
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    print("ok")
"""


def test_a_child_forked_inside_a_block_runs_its_kernels_on_one_thread():
    out = run_python(_FORK_IN_A_BLOCK)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------ threadpoolctl

def test_threadpoolctl_lists_fastrnn_and_its_limits_reach_it(process_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fastrnn.set_num_threads(CORES)
    info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastrnn"]
    assert len(info) == 1
    assert info[0]["user_api"] == "fastrnn" and info[0]["num_threads"] == CORES
    assert info[0]["version"] == fastrnn.__version__
    assert os.path.samefile(info[0]["filepath"], _blas.__file__)
    with threadpoolctl.threadpool_limits(1):
        assert fastrnn.get_num_threads() == 1
        with fastrnn.threads(CORES):                  # a thread's own block wins
            assert fastrnn.get_num_threads() == CORES
    assert fastrnn.get_num_threads() == CORES
    with threadpoolctl.threadpool_limits(limits=1, user_api="fastrnn"):
        assert fastrnn.get_num_threads() == 1
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert fastrnn.get_num_threads() == CORES     # BLAS only
    limiter = threadpoolctl.threadpool_limits(limits={"fastrnn": 1})
    assert fastrnn.get_num_threads() == 1
    limiter.restore_original_limits()
    assert fastrnn.get_num_threads() == CORES


def test_fastrnn_imports_and_works_without_threadpoolctl():
    out = run_python("""
        import sys
        sys.modules["threadpoolctl"] = None        # import threadpoolctl raises ImportError
        import numpy as np
        import fastrnn
        with fastrnn.threads(1):
            fastrnn.GRU(2, 3, seed=0)(np.ones((4, 1, 2), np.float32))
        print(fastrnn.process_settings()["threadpoolctl"])
    """)
    assert out.returncode == 0 and out.stdout.split() == ["False"], out.stderr


def _worker_budget(_):
    """In a joblib worker: the OMP_NUM_THREADS joblib gave it, and fastrnn's budget."""
    k = fastrnn.process_settings()["kernel_threads"]
    return os.environ.get("OMP_NUM_THREADS"), fastrnn.get_num_threads(), k["source"]


def test_joblib_workers_run_fastrnn_on_their_share_of_the_cores():
    """joblib's loky workers (scikit-learn's default) get OMP_NUM_THREADS, cores // n_jobs
    (1 here); fastrnn in them follows it."""
    joblib = pytest.importorskip("joblib")
    loky = pytest.importorskip("joblib.externals.loky")
    try:
        got = joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(_worker_budget)(i) for i in range(2))
    finally:
        loky.get_reusable_executor().shutdown(wait=True)
    for omp, n, source in got:
        assert omp is not None and source == "OMP_NUM_THREADS"
        assert n == min(int(omp), CORES)


# ------------------------------------------------------------------ malloc, the list

_SETTINGS = """
    import json, fastrnn
    print(json.dumps(fastrnn.process_settings()))
"""


def settings(**env: str) -> dict:
    out = run_python(_SETTINGS, **env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_malloc_is_left_to_a_host_that_set_malloc_variables():
    assert settings()["malloc"]["tuned"] is True
    for env in ({"MALLOC_TRIM_THRESHOLD_": "65536"}, {"MALLOC_ARENA_MAX": "2"},
                {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=65536"}):
        malloc = settings(**env)["malloc"]
        assert malloc["tuned"] is False
        assert next(iter(env)) in malloc["reason"]
    assert settings(FASTRNN_MALLOC_TUNING="0")["malloc"] == {
        "tuned": False, "reason": "FASTRNN_MALLOC_TUNING=0"}


def test_process_settings_lists_what_the_import_changed():
    got = settings(GOMP_SPINCOUNT="77", OMP_NUM_THREADS="1")
    assert got["environment"] == {}     # the user chose how threads wait: nothing added
    assert got["kernel_threads"] == {"at_import": 1, "source": "OMP_NUM_THREADS", "now": 1}
    if got["blas_threads"] is not None:
        assert got["blas_threads"]["after"] == 1
    here = fastrnn.process_settings()
    assert here["threadpoolctl"] == (importlib.util.find_spec("threadpoolctl") is not None)
    assert here["kernel_threads"]["now"] == _blas.process_num_threads()


# ------------------------------------------------------- show_config and one opt-out each

_SHOW = """
    import json, fastrnn
    fastrnn.show_config()
    print(json.dumps(fastrnn.process_settings()))
"""


def show(**env: str) -> tuple[str, dict]:
    out = run_python(_SHOW, **env)
    assert out.returncode == 0, out.stderr
    *table, last = out.stdout.strip().splitlines()
    return "\n".join(table), json.loads(last)


def test_show_config_lists_every_setting_with_its_source_and_opt_out():
    table, got = show()
    names = ["OpenMP wait policy", "scipy's BLAS threads", "glibc malloc thresholds",
             "fastrnn's kernel threads", "instruction set of the int8 kernels",
             "threadpoolctl controller"]
    for name in names:
        assert name in table, table
    rows = table.split("\n")[1:]
    assert len(rows) == 4 * len(names)                  # name, value, from, opt out
    assert [r.split()[0] for r in rows[1::4]] == ["value"] * len(names)
    assert [r.split()[0] for r in rows[2::4]] == ["from"] * len(names)
    assert [" ".join(r.split()[:2]) for r in rows[3::4]] == ["opt out"] * len(names)
    assert "OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=10000" in table
    if got["blas_threads"] is not None:
        assert f"1 (was {got['blas_threads']['before']}" in table
    buf = io.StringIO()
    fastrnn.show_config(file=buf)
    assert buf.getvalue().startswith(f"fastrnn {fastrnn.__version__}: what import")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="scipy's OpenBLAS, glibc")
def test_each_opt_out_leaves_its_setting_alone():
    """Every opt-out show_config names, applied alone, leaves that setting and no other."""
    table, base = show()
    if base["blas_threads"] is None:
        pytest.skip("scipy's OpenBLAS was not found: its threads are left alone anyway")
    table, got = show(FASTRNN_BLAS_TUNING="0")
    blas = got["blas_threads"]
    assert blas["after"] == blas["before"] and blas["reason"] == "FASTRNN_BLAS_TUNING=0"
    assert "left alone: FASTRNN_BLAS_TUNING=0" in table and got["malloc"]["tuned"]
    table, got = show(FASTRNN_MALLOC_TUNING="0")
    assert not got["malloc"]["tuned"] and got["blas_threads"]["after"] == 1
    table, got = show(GOMP_SPINCOUNT="100")
    assert got["environment"] == {} and "GOMP_SPINCOUNT=100" in table
    assert "left as the host set it" in table
    table, got = show(FASTRNN_NUM_THREADS="1")
    assert got["kernel_threads"]["at_import"] == 1
    if importlib.util.find_spec("threadpoolctl") is not None:
        out = run_python("""
            import fastrnn, threadpoolctl
            print([i["user_api"] for i in threadpoolctl.threadpool_info()])
        """, FASTRNN_THREADPOOLCTL="0")
        assert out.returncode == 0 and "fastrnn" not in out.stdout, out.stdout + out.stderr
        table, got = show(FASTRNN_THREADPOOLCTL="0")
        assert got["threadpoolctl"] is False and "left alone: FASTRNN_THREADPOOLCTL=0" in table
        assert base["threadpoolctl"] is True
