"""A long-lived Airflow process for the DAG tests: JSON requests on stdin, JSON answers on stdout.

Airflow configures logging for the whole process when imported, so the tests keep it out of
the pytest process (other tests capture logs) and talk to this one instead. Started with
``AIRFLOW_HOME`` etc. already set and the metadata DB migrated (see ``conftest.py``).

Every answer is one line ``@@medcorpus-airflow@@ {json}``; everything else on stdout is log.
Requests: ``{"op": "test", "dag_id", "logical_date"?, "run_conf"?, "mark_success_pattern"?}``
runs ``dag.test()``; ``{"op": "events"}`` lists asset events and queued asset-triggered DAGs;
``{"op": "call", "func", "kwargs"}`` calls a function of ``medcorpus_dagkit``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from datetime import datetime
from pathlib import Path

MARK = "@@medcorpus-airflow@@"
#: modules a DAG file must not pull in at parse time
HEAVY = (
    "pipelines",
    "workers",
    "schemas",
    "trainer",
    "torch",
    "pyarrow",
    "pydicom",
    "numpy",
    "apache_beam",
    "dask",
)


def answer(obj: dict) -> None:
    sys.stdout.write(f"{MARK} {json.dumps(obj, default=str)}\n")
    sys.stdout.flush()


def parse() -> tuple[dict, object]:
    from airflow.dag_processing.dagbag import BundleDagBag

    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    before = {m for m in HEAVY if m in sys.modules}
    # what the DAG processor does: the bundle folder is on sys.path (for medcorpus_dagkit)
    bag = BundleDagBag(dag_folder=str(folder), bundle_path=folder)
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "file": Path(dag.fileloc).name,
            "tasks": sorted(t.task_id for t in dag.tasks),
            "timetable": type(dag.timetable).__name__,
            "timetable_summary": str(getattr(dag.timetable, "summary", "")),
            "outlets": sorted({a.name for t in dag.tasks for a in getattr(t, "outlets", [])}),
            "params": sorted(dag.params.keys()),
        }
    heavy = sorted(m for m in HEAVY if m in sys.modules and m not in before)
    files = sorted(p.name for p in folder.glob("*.py"))
    return {"import_errors": bag.import_errors, "dags": dags, "heavy_modules": heavy, "files": files}, bag


def run_test(bag, req: dict) -> dict:
    dag = bag.dags[req["dag_id"]]
    kwargs = {"run_conf": req.get("run_conf")}
    if req.get("logical_date"):
        kwargs["logical_date"] = datetime.fromisoformat(req["logical_date"])
    if req.get("mark_success_pattern"):
        kwargs["mark_success_pattern"] = req["mark_success_pattern"]
    dr = dag.test(**kwargs)
    tis = [
        {
            "task_id": ti.task_id,
            "map_index": ti.map_index,
            "state": str(ti.state),
            "try_number": ti.try_number,
        }
        for ti in sorted(dr.get_task_instances(), key=lambda t: (t.task_id, t.map_index))
    ]
    return {
        "state": str(dr.state),
        "run_id": dr.run_id,
        "data_interval": [str(dr.data_interval_start), str(dr.data_interval_end)],
        "tis": tis,
    }


def events() -> dict:
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        evs = [
            {
                "asset": e.asset.name,
                "extra": e.extra,
                "source_dag_id": e.source_dag_id,
                "source_task_id": e.source_task_id,
                "source_map_index": e.source_map_index,
            }
            for e in s.scalars(select(AssetEvent).order_by(AssetEvent.id))
        ]
        queued = [
            {"asset": name, "target_dag_id": q.target_dag_id}
            for q, name in s.execute(
                select(AssetDagRunQueue, AssetModel.name).join(
                    AssetModel, AssetModel.id == AssetDagRunQueue.asset_id
                )
            )
        ]
    return {"events": evs, "queued": queued}


def main() -> None:
    try:
        info, bag = parse()
    except Exception:
        answer({"error": traceback.format_exc()})
        return
    answer(info)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "test":
                answer(run_test(bag, req))
            elif req["op"] == "events":
                answer(events())
            elif req["op"] == "call":
                import medcorpus_dagkit

                answer({"result": getattr(medcorpus_dagkit, req["func"])(**req["kwargs"])})
            elif req["op"] == "exit":
                break
        except Exception:
            answer({"error": traceback.format_exc()})


if __name__ == "__main__":
    main()
