"""wuxing's HTTP API: the original's handlers and parameters, plus revisions, CAS, watch,
rollback and import/export. Thin: each handler checks access and calls the domain module.

Item values (``item_value``, ``item_value_old``, ``item_default``, ``items``,
``items_data``) and import documents are declared ``Secret``: a typed item may hold a
password, so the framework masks them in every log line (and so in the console's search).

Writes are ``@api(write=True)`` (the operator role; deletes the admin role); reads are
open unless ``WUXING_READ_TOKEN`` is set. Refusals answer the original's stats with
``x-reason`` (errors.py holds the stats and their HTTP statuses).
"""

from typing import Annotated, Any

from butterfly_common import api, retstat
from butterfly_common.params import SECRET, Secret
from butterfly_common.protocol import Stream
from butterfly_common.roles import identity_of
from butterfly_common.runtime import get_config
from butterfly_wuxing import gray as gray_mod
from butterfly_wuxing import history, instances, items, lists, sections, transfer, values
from butterfly_wuxing import review as review_mod
from butterfly_wuxing import watch as feed
from butterfly_wuxing.access import check_read
from butterfly_wuxing.config import WuxingConfig
from butterfly_wuxing.revisions import namespace_revision

OK = retstat.OK
NDJSON = "application/x-ndjson"


def _done(revision: int, **data: Any):
    return OK, {"data": {"revision": revision, **data}}


# -- sections --------------------------------------------------------------------------------

@api
def section_list(req, namespace: str | None = None, section_name: str | None = None,
                 page_index: int = 1, page_size: int = 10, orderBy: str | None = None,
                 orderDir: str | None = None):
    """Sections, newest change first: ``data.{total, list}`` (the admin UI's call)."""
    check_read(req)
    return OK, {"data": sections.list_(namespace, section_name, page_index, page_size,
                                       orderBy, orderDir)}


@api(write=True)
def section_create(req, namespace: str, section_name: str, section_version: str):
    """A new, empty, disabled section version."""
    return _done(sections.create(namespace, section_name, section_version, req.username))


@api(write=True)
def section_item_add(req, namespace: str, section_name: str, section_version: str,
                     item_name: str, item_default: Secret, item_description: str = "",
                     item_enum: list | None = None, item_min: float | None = None,
                     item_max: float | None = None, item_regex: str | None = None,
                     item_schema: dict | None = None):
    """Add a typed item (prefix i| f| s| b| t|) to a disabled section; optional constraints:
    ``item_enum`` (list or comma list), ``item_min``/``item_max`` (value, or length for
    strings), ``item_regex`` (strings), ``item_schema`` (a JSON Schema, Draft 2020-12, for
    the value; with ``"contentMediaType": "application/json"`` an s|/t| value is a JSON
    document checked against ``contentSchema``). The default must satisfy them all."""
    enum = item_enum[0] if isinstance(item_enum, list) and len(item_enum) == 1 \
        and isinstance(item_enum[0], str) else item_enum
    constraints = {"enum": enum, "min_": item_min, "max_": item_max, "regex": item_regex}
    return _done(sections.item_add(namespace, section_name, section_version, item_name,
                                   item_default, item_description, req.username, constraints,
                                   item_schema))


@api(write=True)
def section_schema_set(req, namespace: str, section_name: str, section_version: str,
                       section_schema: dict | None = None):
    """Set the JSON Schema (Draft 2020-12) every instance of this disabled section version
    must satisfy as a whole ``{item_name: value}`` (cross-item rules); without
    ``section_schema`` it is removed. Checked on every write of values, at draft time and
    at publish; enabling checks the item defaults against it."""
    return _done(sections.schema_set(namespace, section_name, section_version,
                                     section_schema, req.username))


@api(write=True, role="admin")
def section_item_delete(req, namespace: str, section_name: str, section_version: str,
                        item_name: str):
    """Remove an item from a disabled section."""
    return _done(sections.item_delete(namespace, section_name, section_version, item_name,
                                      req.username))


@api
def section_get(req, namespace: str, section_name: str, section_version: str):
    """The section's template and state (cached)."""
    check_read(req)
    return OK, {"data": sections.get(namespace, section_name, section_version)}


@api(write=True)
def section_enable(req, namespace: str, section_name: str, section_version: str):
    """Enable a section so instances can use it (its items are then frozen)."""
    return _done(sections.enable(namespace, section_name, section_version, req.username))


@api(write=True)
def section_disable(req, namespace: str, section_name: str, section_version: str):
    """Disable a section to edit it again; refused while instances use it."""
    return _done(sections.disable(namespace, section_name, section_version, req.username))


@api(write=True, role="admin")
def section_delete(req, namespace: str, section_name: str, section_version: str):
    """Delete a section version; refused while instances use it (ERR_SECTION_IN_USE)."""
    return _done(sections.delete(namespace, section_name, section_version, req.username))


# -- instances -------------------------------------------------------------------------------

@api
def instance_list(req, namespace: str, section_name: str, instance_name: str | None = None,
                  section_version: str | None = None, section_md5: str | None = None,
                  extra_items: list[str] | None = None, sort: str | None = None,
                  page_index: int = 1, page_size: int = 10, orderBy: str | None = None,
                  orderDir: str | None = None):
    """Instances of a section; ``extra_items`` adds item values as columns, ``sort`` takes
    instance_name, u_time, c_time or an item name (``-`` prefix: descending)."""
    check_read(req)
    return OK, {"data": lists.instance_list(namespace, section_name, instance_name,
                                            section_version, section_md5, extra_items, sort,
                                            page_index, page_size, orderBy, orderDir)}


@api(write=True)
def instance_create(req, namespace: str, instance_name: str, section_name: str,
                    section_version: str,
                    items_data: Annotated[dict | None, SECRET] = None):
    """Create an instance of an enabled section: every item at its default unless
    ``items_data`` gives a value. One transaction."""
    return _done(instances.create(namespace, instance_name, section_name, section_version,
                                  items_data, req.username))


@api
def instance_get(req, namespace: str, instance_name: str, items: list[str] | None = None,
                 value_format: str = "simple"):
    """Values of an instance (cached): simple ``{item: value}`` or detail per item."""
    check_read(req)
    doc = instances.load(namespace, instance_name)
    data = instances.view(doc, lists._names(items), value_format)
    return OK, {"data": data, "revision": doc["revision"]}


@api(write=True)
def instance_update_item(req, namespace: str, instance_name: str, item_name: str,
                         item_value: Secret, item_value_old: Secret = None,
                         revision: int | None = None):
    """Set one item. CAS: ``revision`` (the item's, exact) or ``item_value_old``; a lost
    CAS is ERR_ITEM_UPDATE_FAILED with the current value and revision in ``data``."""
    result = instances.update_items(
        namespace, instance_name, {item_name: item_value}, req.username,
        olds={item_name: item_value_old} if item_value_old is not None else None,
        item_revisions={item_name: revision} if revision is not None else None)
    item = result["items"][item_name]
    return _done(result["revision"], **item)


@api(write=True)
def instance_update_items(req, namespace: str, instance_name: str,
                          items: Annotated[dict, SECRET],
                          revision: int | None = None):
    """Set several items (a JSON object) in one transaction: all or nothing. ``revision``:
    the instance's revision, the call fails if anything in the instance changed since."""
    result = instances.update_items(namespace, instance_name, items, req.username,
                                    revision=revision)
    return _done(result["revision"], items=result["items"])


@api(write=True)
def instance_update_section(req, namespace: str, instance_name: str, section_version: str):
    """Move the instance to another version of its section (upgrade or downgrade)."""
    return _done(instances.update_section(namespace, instance_name, section_version,
                                          req.username))


@api(write=True, role="admin")
def instance_delete(req, namespace: str, instance_name: str):
    """Delete the instance and its items (recorded in the history). One transaction."""
    return _done(instances.delete(namespace, instance_name, req.username))


@api(write=True)
def instance_rollback(req, namespace: str, instance_name: str, revision: int):
    """Restore the instance's values as of ``revision``, as a new write."""
    result = history.instance_rollback(namespace, instance_name, revision, req.username)
    return _done(result["revision"], items=result["items"])


# -- items -----------------------------------------------------------------------------------

@api
def item_get(req, item_id: int, item_type: str | None = None):
    """One item by id (cached); ``item_type`` is optional and checked against the stored one."""
    check_read(req)
    return OK, {"data": items.get(item_id, item_type)}


@api(write=True)
def item_update(req, item_id: int, item_value: Secret, item_type: str | None = None,
                item_value_old: Secret = None, revision: int | None = None):
    """Set one item by id; its type comes from the stored item, never from the caller."""
    result = items.update(item_id, item_value, req.username, item_type=item_type,
                          item_value_old=item_value_old, revision=revision)
    return _done(result.pop("revision"), **result)


@api
def item_list(req, namespace: str | None = None, section_name: str | None = None,
              instance_name: str | None = None, item_name: str | None = None,
              item_value_operator: str | None = None, item_value: Secret = None,
              start_time: str | None = None, end_time: str | None = None,
              sort: str | None = None, page_index: int = 1, page_size: int = 10,
              orderBy: str | None = None, orderDir: str | None = None):
    """Items across instances; ``item_value_operator`` (= < <= > >= !=) compares typed
    values, ``start_time``/``end_time`` (YYYYmmddHHMMSS) bound u_time as [start, end)."""
    check_read(req)
    return OK, {"data": lists.item_list(namespace, section_name, instance_name, item_name,
                                        item_value_operator, item_value, start_time, end_time,
                                        sort, page_index, page_size, orderBy, orderDir)}


@api
def item_history_list(req, item_id: int, item_type: str | None = None, page_index: int = 1,
                      page_size: int = 10):
    """An item's history, newest first: create / update / delete / rollback rows."""
    check_read(req)
    return OK, {"data": history.item_history(item_id, item_type, page_index, page_size)}


@api(write=True)
def item_rollback(req, item_id: int, revision: int):
    """Restore one item's value as of ``revision``, as a new write."""
    result = history.item_rollback(item_id, revision, req.username)
    return _done(result.pop("revision"), **result)


# -- revisions, watch, import / export -------------------------------------------------------

@api
def namespace_get(req, namespace: str):
    """The namespace's current revision and its compaction mark."""
    check_read(req)
    revision, compacted = namespace_revision(values.check_namespace(namespace))
    return OK, {"data": {"namespace": namespace, "revision": revision,
                         "compact_revision": compacted}}


@api(topic=False, stream=NDJSON)
def watch(req, namespace: str, since: int | None = None, timeout: float = 30.0,
          stream: bool = False):
    """Changes after revision ``since`` in order, waiting up to ``timeout`` s for the first
    (long poll). No ``since``: the current revision at once. A ``since`` older than the
    retention is ERR_REVISION_COMPACTED.

    ``stream=1``: one chunked ``application/x-ndjson`` answer instead, open for ``timeout``
    s (at most ``WUXING_WATCH_MAX_TIMEOUT``) and then ended; one JSON line per change (the
    long poll's change objects), then ``{"stream": "revision", "revision": R}`` once all of
    revision R is sent; ``{"stream": "keepalive", "revision": R}`` first when there is
    nothing to send and after ``WUXING_WATCH_KEEPALIVE`` s (default 5) without a change;
    ``{"stream": "end", "revision": R}`` last: reconnect from R. No ``since``: from the
    current revision. Refusals (compaction included) are the long poll's envelopes."""
    check_read(req)
    config = get_config(WuxingConfig)
    if stream:
        return Stream(feed.stream(namespace, since, timeout, config), NDJSON)
    return OK, {"data": feed.watch(namespace, since, timeout, config)}


@api
def export(req, namespace: str):
    """The namespace (sections, instances, values) as one JSON document."""
    check_read(req)
    return OK, {"data": transfer.export(namespace)}


@api(write=True)
def namespace_import(req, document: Annotated[dict, SECRET], namespace: str | None = None,
                     dry_run: bool = False):
    """Import an exported document (into ``namespace`` if given); ``dry_run`` answers the
    diff without writing. One transaction."""
    return OK, {"data": transfer.import_(document, namespace, dry_run, req.username)}


globals()["import"] = namespace_import  # /wuxing/import (a keyword, so set by name)


# -- reviewed publishing: draft -> publish (-> approval) -> release ---------------------------

def _who(req) -> str:
    """The caller's name as wuxing/canghai identify it (roles.identity_of): a trusted
    proxy's user, a huoyan JWT's user, or the token's name (``admin-token``...)."""
    name = identity_of(req).username
    return name if name and name != "-" else req.username


@api
def review_get(req, namespace: str):
    """The namespace's publishing mode (``review``, ``approval``), how many items its draft
    holds, the publish waiting for approval (or null) and the latest release's revision."""
    check_read(req)
    return OK, {"data": review_mod.get_settings(namespace)}


@api(write=True, role="admin")
def review_set(req, namespace: str, review: bool, approval: bool = False):
    """Turn reviewed publishing on (a baseline release of the current values is recorded)
    or off (the draft must be empty, nothing pending); ``approval``: a publish needs a
    second person. Audited."""
    return OK, {"data": review_mod.set_settings(namespace, review, approval, _who(req))}


@api(write=True)
def draft_set(req, namespace: str, instance_name: str, items: Annotated[dict, SECRET]):
    """Put values (``{item_name: value}``) of one instance into the namespace's draft,
    each checked against its section now and again at publish. Clients keep reading the
    live values until the draft is published."""
    return OK, {"data": review_mod.draft_set(namespace, instance_name, items, _who(req))}


@api(write=True)
def draft_discard(req, namespace: str, instance_name: str | None = None,
                  items: list[str] | None = None):
    """Drop draft entries: all of them, one instance's, or some ``items`` of it."""
    return OK, {"data": review_mod.draft_discard(namespace, instance_name,
                                                 lists._names(items), _who(req))}


@api
def draft_get(req, namespace: str):
    """The draft's entries (draft value, live value, who set it) and the pending publish."""
    check_read(req)
    return OK, {"data": review_mod.draft_get(namespace)}


@api
def draft_diff(req, namespace: str):
    """What publishing now would change against the latest release, item by item
    (``added`` / ``removed`` / ``changed`` with ``old`` and ``new``)."""
    check_read(req)
    return OK, {"data": review_mod.draft_diff(namespace)}


@api(write=True)
def publish(req, namespace: str, message: str):
    """Publish the whole draft as one release (one revision, ``message``, the caller as
    author); with approval on, ask for it (``state: pending``): the draft is then frozen
    until publish_approve or publish_reject. A value that no longer fits its section refuses
    the publish with every violation in ``data.violations``."""
    return OK, {"data": review_mod.publish(namespace, message, _who(req))}


@api(write=True)
def publish_approve(req, namespace: str, comment: str):
    """Approve the pending publish (with a comment): it is published at once (a pending
    gray release becomes active). Refused to its author and to anyone who edited the draft
    (ERR_SELF_APPROVAL)."""
    return OK, {"data": review_mod.approve(namespace, comment, _who(req))}


@api(write=True)
def publish_reject(req, namespace: str, comment: str):
    """Close the pending publish without publishing (its author may so withdraw it); the
    draft stays. A pending gray release is then ``rejected`` and never served."""
    return OK, {"data": review_mod.reject(namespace, comment, _who(req))}


@api
def release_list(req, namespace: str, state: str | None = None, page_index: int = 1,
                 page_size: int = 10):
    """Releases and publish requests, newest first; ``state``: pending, published or
    rejected."""
    check_read(req)
    return OK, {"data": review_mod.release_list(namespace, state, page_index, page_size)}


@api
def release_get(req, namespace: str, revision: int):
    """One release with every value of the namespace at it (``values``)."""
    check_read(req)
    return OK, {"data": review_mod.release_get(namespace, revision)}


@api
def release_diff(req, namespace: str, from_revision: int, to_revision: int):
    """The changes from one release to another, item by item."""
    check_read(req)
    return OK, {"data": review_mod.release_diff(namespace, from_revision, to_revision)}


@api(write=True)
def release_rollback(req, namespace: str, revision: int, message: str | None = None):
    """A new release with the values of release ``revision`` (items that still exist);
    needs an empty draft; with approval on it is a publish request like any other."""
    return OK, {"data": review_mod.rollback(namespace, revision, message, _who(req))}


@api
def review_log(req, namespace: str, page_index: int = 1, page_size: int = 10):
    """The audit of reviewed publishing, newest first: settings, draft_set, draft_discard,
    request, publish, approve, reject, rollback, with user, comment and revision."""
    check_read(req)
    return OK, {"data": review_mod.review_log(namespace, page_index, page_size)}


# -- gray releases and client reports ---------------------------------------------------------

@api(write=True)
def gray_create(req, namespace: str, clients: list[str] | None = None,
                labels: list[str] | None = None, ips: list[str] | None = None,
                revision: int | None = None, message: str | None = None):
    """A gray release: the draft's values (no ``revision``; the draft is then emptied) or
    those of release ``revision``, served only to clients the rule matches - by name
    (``clients``), by any label (``labels``) or by IP range (``ips``, CIDR); everyone else
    keeps the main release. At most 10 per namespace run or wait at once (ERR_GRAY_LIMIT).
    With approval on it only asks: ``state: pending``, served to nobody until a second
    person approves it with publish_approve (publish_reject: ``rejected``)."""
    return OK, {"data": gray_mod.create(namespace, lists._names(clients),
                                        lists._names(labels), lists._names(ips), revision,
                                        message, _who(req))}


@api(write=True)
def gray_promote(req, namespace: str, gray_id: int, message: str | None = None):
    """Publish the gray release's values as a main release for every client (needs an
    empty draft); with approval on, a publish request (the gray release is ``promoting``
    and serves its clients until it is approved or rejected)."""
    return OK, {"data": gray_mod.promote(namespace, gray_id, message, _who(req))}


@api(write=True)
def gray_abort(req, namespace: str, gray_id: int, comment: str | None = None):
    """End a gray release: its clients fall back to the main release."""
    return OK, {"data": gray_mod.abort(namespace, gray_id, comment, _who(req))}


@api
def gray_list(req, namespace: str, state: str | None = None, page_index: int = 1,
              page_size: int = 10):
    """Gray releases, newest first, with their rule and client counts (``clients``:
    ``applied``, ``rejected``); ``state``: active, promoting, promoted or aborted."""
    check_read(req)
    return OK, {"data": gray_mod.list_(namespace, state, page_index, page_size)}


@api
def gray_get(req, namespace: str, gray_id: int):
    """One gray release with its values (``overrides``) and client counts."""
    check_read(req)
    return OK, {"data": gray_mod.get(namespace, gray_id)}


@api
def client_config(req, namespace: str, client: str | None = None,
                  labels: list[str] | None = None):
    """The values this client should run: the main release (``gray_id`` null) or the
    newest running gray release whose rule matches its name, labels or IP (the caller's,
    as the framework resolves it). ``revision`` names the main release, ``namespace_revision``
    is where to watch from."""
    check_read(req)
    return OK, {"data": gray_mod.client_config(namespace, client, lists._names(labels),
                                               req.ip)}


@api
def client_report(req, namespace: str, client: str, status: str, revision: int,
                  gray_id: int | None = None, error: str | None = None,
                  labels: list[str] | None = None):
    """A client reports the release it ``applied`` or ``rejected`` (with its validation
    ``error``, cut to 1000 characters): ``revision`` and ``gray_id`` as client_config
    answered them. Read access suffices (clients hold read credentials)."""
    check_read(req)
    return OK, {"data": gray_mod.report(namespace, client, status, revision, gray_id, error,
                                        lists._names(labels), req.ip)}


@api
def client_list(req, namespace: str, revision: int | None = None,
                gray_id: int | None = None, status: str | None = None, page_index: int = 1,
                page_size: int = 10):
    """Which clients run which release (reports within WUXING_CLIENT_TTL): filter by the
    release they run (``revision``, ``gray_id``; 0 for the main release) or the
    ``status`` of their last report."""
    check_read(req)
    return OK, {"data": gray_mod.client_list(namespace, revision, gray_id, status,
                                             page_index, page_size)}


@api
def client_stats(req, namespace: str):
    """Per release (``revision``, ``gray_id``): how many clients run it (``applied``) and
    how many rejected it."""
    check_read(req)
    return OK, {"data": gray_mod.client_stats(namespace)}

