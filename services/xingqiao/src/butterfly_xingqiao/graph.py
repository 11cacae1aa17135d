"""A flow as a Graphviz graph: DOT text, rendered to SVG or PNG by ``dot``.

Nodes are coloured by task state (the original's palette, extended to the new states)
and show the label, task id, stat and cost; diamond begin/end nodes frame the DAG. The
text is built here with every string escaped; ``dot`` runs with an argv list, the DOT on
stdin and a timeout - never a shell, never a file path from the request.
"""

from __future__ import annotations

import shutil
import subprocess

from .models import Job, Task, split_list

#: state -> (fill colour, style); the legend lists them in this order.
STYLES: dict[str, tuple[str, str]] = {
    "waiting": ("grey85", "filled,dashed"),
    "pending": ("yellow", "filled"),
    "started": ("palegreen", "filled"),
    "retrying": ("orange", "filled"),
    "finished": ("lightblue", "filled"),
    "failed": ("tomato", "filled,bold"),
    "timed_out": ("orchid", "filled,bold"),
    "skipped": ("white", "filled,dotted"),
    "canceled": ("grey60", "filled"),
}
FORMATS = {"svg": "image/svg+xml", "png": "image/png"}


class GraphError(RuntimeError):
    """``dot`` is missing, failed or took too long."""


def _q(text: object) -> str:
    """A DOT double-quoted string."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _map_line(parent: Task, items: list[Task]) -> str:
    """A map task's progress: items finished / total, failed, running."""
    done = sum(t.task_status == "finished" for t in items)
    bad = sum(t.task_status in ("failed", "timed_out") for t in items)
    running = sum(t.task_status in ("pending", "started", "retrying") for t in items)
    return (f"map {parent.task_map_over}: {done}/{len(items)} finished\n"
            f"{bad} failed, {running} running")


def to_dot(job: Job, tasks: list[Task]) -> str:
    """The flow's DAG; a map task is one node showing its items' progress (the items
    themselves are not drawn)."""
    items: dict[int, list[Task]] = {}
    for t in tasks:
        if t.task_parent:
            items.setdefault(t.task_parent, []).append(t)
    tasks = [t for t in tasks if not t.task_parent]
    labels = {t.task_label for t in tasks}
    has_children = {d for t in tasks for d in split_list(t.task_dependencies)}
    title = (f"flow {job.job_id} {job.job_name} - {job.job_type} v{job.job_version} - "
             f"{job.job_status}")
    lines = [f"// flow {job.job_id} ({job.job_type} version {job.job_version}) "
             f"{job.job_status}",
             f"digraph flow_{job.job_id} {{",
             "  compound=true; rankdir=LR; node [fontsize=10, shape=box, style=filled];",
             f"  label={_q(title)};",
             '  begin0 [shape=diamond, label="begin", fillcolor=white];',
             '  end0 [shape=diamond, label="end", fillcolor=white];',
             '  subgraph cluster_sg0 { label="workflow";']
    for t in tasks:
        fill, style = STYLES.get(t.task_status, ("white", "filled"))
        text = (f"{t.task_label}\ntaskid={t.task_id}\nstat={t.ret_stat or '-'}\n"
                f"cost={t.task_cost:.3f}\n{t.task_status}")
        shape = ""
        if t.task_map_over is not None:
            text += "\n" + _map_line(t, items.get(t.task_id, []))
            shape = ", shape=box3d"
        lines.append(f"    n{t.task_id} [label={_q(text)}, fillcolor={_q(fill)}, "
                     f"style={_q(style)}, class={_q(t.task_status)}{shape}];")
    lines.append("  }")
    ids = {t.task_label: t.task_id for t in tasks}
    for t in tasks:
        deps = [d for d in split_list(t.task_dependencies) if d in labels]
        if not deps:
            lines.append(f"  begin0 -> n{t.task_id};")
        for d in deps:
            lines.append(f"  n{ids[d]} -> n{t.task_id};")
        if t.task_label not in has_children:
            lines.append(f"  n{t.task_id} -> end0;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, fmt: str, timeout: float) -> bytes:
    """Run ``dot -T<fmt>`` on ``dot_text``; GraphError when it cannot."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    binary = shutil.which("dot")
    if binary is None:
        raise GraphError("Graphviz 'dot' is not installed (Debian package graphviz)")
    try:
        done = subprocess.run([binary, f"-T{fmt}"], input=dot_text.encode(),  # noqa: S603
                              capture_output=True, timeout=timeout, check=False, env={})
    except subprocess.TimeoutExpired:
        raise GraphError(f"dot took longer than {timeout:g}s") from None
    if done.returncode != 0:
        raise GraphError(f"dot failed: {done.stderr.decode(errors='replace')[:300]}")
    return done.stdout
