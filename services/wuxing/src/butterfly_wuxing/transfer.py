"""Export a namespace as one JSON document and import it elsewhere (dry run: the diff).

The document holds sections (templates, enabled flag) and instances (section version and
values); ids, revisions and history stay behind, since they belong to the source fleet.
An import runs as one write: either every difference is applied or none.
"""

from __future__ import annotations

import json
from typing import Any

from . import errors as E
from . import instances, schemas, sections, values
from .errors import WuxingError
from .itemrows import create_item, set_value, value_of
from .models import Instance, Section
from .revisions import namespace_revision
from .store import Write, run_write

FORMAT = "butterfly-wuxing/1"


def export(namespace: str) -> dict[str, Any]:
    values.check_namespace(namespace)
    doc_sections = []
    for row in Section.select().where(Section.namespace == namespace).order_by(
            Section.section_name, Section.section_version):
        doc_sections.append({"section_name": row.section_name,
                             "section_version": row.section_version,
                             "is_enabled": row.is_enabled,
                             "section_template": sections.template_of(row)})
    doc_instances = []
    for inst in Instance.select().where(Instance.namespace == namespace).order_by(
            Instance.instance_name):
        rows = instances.items_of(namespace, inst.instance_name)
        doc_instances.append({"instance_name": inst.instance_name,
                              "section_name": inst.section_name,
                              "section_version": inst.section_version,
                              "items": {n: value_of(i) for n, i in sorted(rows.items())}})
    return {"format": FORMAT, "namespace": namespace,
            "revision": namespace_revision(namespace)[0],
            "sections": doc_sections, "instances": doc_instances}


def _bad(why: str) -> WuxingError:
    return WuxingError(E.ERR_IMPORT_INVALID, why)


def _validate(document: dict[str, Any]) -> None:
    if document.get("format") != FORMAT:
        raise _bad(f"document format must be {FORMAT!r}")
    if not isinstance(document.get("sections"), list) or \
            not isinstance(document.get("instances"), list):
        raise _bad("document needs 'sections' and 'instances' lists")
    for sec in document["sections"]:
        if not isinstance(sec, dict) or not isinstance(sec.get("section_template"), dict):
            raise _bad("each section needs section_name, section_version, section_template")
        for item_name, spec in sec["section_template"].items():
            if isinstance(spec, dict) and "schema" in spec:
                schemas.parse(spec["schema"], E.ERR_IMPORT_INVALID, f"{item_name}: schema")
    for inst in document["instances"]:
        if not isinstance(inst, dict) or not isinstance(inst.get("items"), dict):
            raise _bad("each instance needs instance_name, section_name, section_version, "
                       "items")


def _plan(namespace: str, document: dict[str, Any]) -> dict[str, list]:
    """What an import would change, checked against the current data (no writes)."""
    diff: dict[str, list] = {"sections_created": [], "sections_enabled": [],
                             "instances_created": [], "items_changed": []}
    templates: dict[tuple[str, str], dict] = {}
    for sec in document["sections"]:
        name, version = str(sec.get("section_name")), str(sec.get("section_version"))
        sections.check_key(namespace, name, version)
        template = sec["section_template"]
        for item_name, spec in template.items():
            kind = values.item_type(item_name)
            rules = {k: spec[k] for k in ("enum", "min", "max", "regex") if k in spec}
            values.build_constraints(kind, item_name, rules.get("enum"), rules.get("min"),
                                     rules.get("max"), rules.get("regex"))
            values.check(kind, spec.get("item_default"), item_name, rules)
        templates[(name, version)] = template
        row = Section.get_or_none((Section.namespace == namespace)
                                  & (Section.section_name == name)
                                  & (Section.section_version == version))
        if row is None:
            diff["sections_created"].append({"section_name": name, "section_version": version,
                                             "is_enabled": bool(sec.get("is_enabled"))})
        elif sections.template_md5(sections.template_of(row)) != \
                sections.template_md5(template):
            raise WuxingError(E.ERR_IMPORT_CONFLICT,
                              f"section {name}/{version} exists with another template")
        elif sec.get("is_enabled") and not row.is_enabled:
            diff["sections_enabled"].append({"section_name": name, "section_version": version})
    for inst in document["instances"]:
        name = instances.check_instance_name(str(inst.get("instance_name")))
        key = (str(inst.get("section_name")), str(inst.get("section_version")))
        template = templates.get(key)
        if template is None:
            row = Section.get_or_none((Section.namespace == namespace)
                                      & (Section.section_name == key[0])
                                      & (Section.section_version == key[1]))
            if row is None:
                raise _bad(f"instance {name}: section {key[0]}/{key[1]} is in neither the "
                           "document nor the target")
            template = sections.template_of(row)
        unknown = [n for n in inst["items"] if n not in template]
        if unknown:
            raise _bad(f"instance {name}: items not in its section: {', '.join(unknown)}")
        wanted = {n: instances.checked(template, n, v) for n, v in inst["items"].items()}
        current = Instance.get_or_none((Instance.namespace == namespace)
                                       & (Instance.instance_name == name))
        if current is None:
            diff["instances_created"].append({"instance_name": name, "section_name": key[0],
                                              "section_version": key[1], "items": wanted})
            continue
        if (current.section_name, current.section_version) != key:
            raise WuxingError(E.ERR_IMPORT_CONFLICT,
                              f"instance {name} uses {current.section_name}/"
                              f"{current.section_version}, the document {key[0]}/{key[1]}")
        rows = instances.items_of(namespace, name)
        for item_name, value in wanted.items():
            if item_name in rows and value_of(rows[item_name]) != value:
                diff["items_changed"].append({"instance_name": name, "item_name": item_name,
                                              "item_value_old": value_of(rows[item_name]),
                                              "item_value": value})
    return diff


def import_(document: dict[str, Any], namespace: str | None, dry_run: bool,
            user: str) -> dict[str, Any]:
    """Apply (or, with ``dry_run``, only show) the difference ``document`` makes."""
    _validate(document)
    namespace = values.check_namespace(namespace or str(document.get("namespace")))
    if dry_run:
        return {"dry_run": True, "namespace": namespace, "diff": _plan(namespace, document)}

    def change(write: Write) -> dict[str, list]:
        diff = _plan(namespace, document)
        by_key = {(s["section_name"], s["section_version"]): s for s in document["sections"]}
        for sec in diff["sections_created"]:
            src = by_key[(sec["section_name"], sec["section_version"])]
            template = src["section_template"]
            row = Section.create(namespace=namespace, section_name=sec["section_name"],
                                 section_version=sec["section_version"],
                                 section_template=json.dumps(template,
                                                 ensure_ascii=False),
                                 section_md5=sections.template_md5(template),
                                 is_enabled=sec["is_enabled"], user=write.user,
                                 revision=write.revision)
            write.record("section", "import", section_name=row.section_name,
                         section_version=row.section_version, value_new=template)
        for sec in diff["sections_enabled"]:
            Section.update(is_enabled=True, revision=write.revision).where(
                (Section.namespace == namespace) & (Section.section_name == sec["section_name"])
                & (Section.section_version == sec["section_version"])).execute()
            write.record("section", "enable", **sec)
        for inst in diff["instances_created"]:
            section = sections.find(namespace, inst["section_name"], inst["section_version"])
            template = sections.template_of(section)
            Instance.create(namespace=namespace, instance_name=inst["instance_name"],
                            section_name=inst["section_name"],
                            section_version=inst["section_version"],
                            section_md5=section.section_md5, user=write.user,
                            revision=write.revision)
            write.record("instance", "create", section_name=inst["section_name"],
                         section_version=inst["section_version"],
                         instance_name=inst["instance_name"])
            for item_name, spec in template.items():
                value = inst["items"].get(item_name)
                value = instances.checked(template, item_name,
                                          spec["item_default"] if value is None else value)
                create_item(write, namespace, inst["section_name"], inst["instance_name"],
                            item_name, value)
        for change_ in diff["items_changed"]:
            item = instances.items_of(namespace, change_["instance_name"])[change_["item_name"]]
            set_value(write, item, change_["item_value"], cmd="import")
        touched = {i["instance_name"] for i in diff["instances_created"]} | {
            c["instance_name"] for c in diff["items_changed"]}
        for name in sorted(touched):
            instance = instances.find(namespace, name)
            # the instance's revision moves with its items' (update_items' guard reads it)
            instances._touch(write, instance)
            instances.check_instance(namespace, instance)
        return diff

    diff, revision = run_write(namespace, user, change, direct=True)
    return {"dry_run": False, "namespace": namespace, "revision": revision, "diff": diff}
