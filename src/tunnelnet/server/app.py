"""The REST layer: thin FastAPI routes over the service modules, Neutron v2.0 shaped.

Every error leaves in Neutron's shape, `{"NeutronError": {"type", "message", "detail"}}`:
ours with their own status, FastAPI's validation errors (422) as 400 InvalidInput, unknown
paths and methods as 404/405, anything unexpected as a logged 500 without internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from enum import Enum
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse as _StdlibJSONResponse
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunnelnet import __version__
from tunnelnet.api import REVISION_HEADER, ResyncRequired, codec
from tunnelnet.server import (
    agents,
    extensions,
    fanout,
    l2pop,
    networks,
    port_status,
    ports,
    projects,
    schemas,
    segment_views,
    subnets,
    watch,
)  # fmt: skip
from tunnelnet.server.agent_fast_path import AgentFastPath
from tunnelnet.server.auth import ADMIN, Caller, authenticate, configured_caller, new_token
from tunnelnet.server.controller import (
    Controller,
    create_many,
    list_resource,
    list_visible,
    public,
    show_resource,
)  # fmt: skip
from tunnelnet.server.errors import ApiError, BadRequest, Unauthorized, error_body
from tunnelnet.server.query import select
from tunnelnet.server.token_gate import TokenGate
from tunnelnet.store.base import Doc, StoreError, StoreUnavailable

log = logging.getLogger(__name__)
Token = Annotated[str | None, Header(alias="X-Auth-Token")]
Fields = Annotated[list[str] | None, Query(alias="fields")]
# an agent's host: its watch and listing carry only the ports that concern it (server/fanout.py)
Host = Annotated[str | None, Query(min_length=1, max_length=255)]


class JSONResponse(_StdlibJSONResponse):
    """Every JSON answer, encoded by orjson (api/codec.py): the standard library's encoder
    was much of the controller's CPU as a thousand agents fill a cloud (heartbeats, bulk
    creates, status reports)."""

    def render(self, content: Any) -> bytes:
        return codec.dumps(content)


def _error(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(error_type, message), status_code=status)


def _validation_message(errors: list[Any]) -> str:
    """What was wrong, named by the fields the client sent.

    A create body is one of two forms (`{"port": {...}}` or bulk `{"ports": [...]}`); pydantic
    reports why the body fails each, under the form's model name. Only the form the client
    meant (the one whose wrapper key it sent) is worth reporting."""
    inner = [{**e, "loc": tuple(p for p in e.get("loc", ()) if p != "body")} for e in errors]
    forms: dict[str, list[Any]] = {}
    for error in inner:
        loc = error["loc"]
        if loc and isinstance(loc[0], str) and loc[0].endswith("Request"):
            forms.setdefault(loc[0], []).append(error)
    if forms:
        meant = [
            found for found in forms.values()
            if not any(len(e["loc"]) == 2 and e["type"] == "missing" for e in found)
        ]  # fmt: skip
        chosen = meant[0] if len(meant) == 1 else [e for f in forms.values() for e in f]
        inner = [{**e, "loc": e["loc"][1:]} for e in chosen]
    return schemas.describe_errors(inner) or "invalid input"


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.error_type, exc.message)

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        if any(error.get("type") == "json_invalid" for error in errors):
            return _error(400, "InvalidInput", "the request body is not valid JSON")
        return _error(400, "InvalidInput", _validation_message(errors))

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kinds = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized"}
        return _error(exc.status_code, kinds.get(exc.status_code, "HTTPError"), str(exc.detail))

    async def store_error(_: Request, exc: Exception) -> Response:
        if isinstance(exc, StoreUnavailable):
            # etcd away or without quorum: nothing was changed and trying later may succeed,
            # which is what 503 tells a client (Neutron answers ServiceUnavailable likewise)
            log.warning("store unavailable: %s", exc)
            cause = f" ({exc.cause})" if exc.cause else ""
            outcome = ("the request may have been done: read before repeating it"
                       if exc.unknown else "nothing was changed, try again")
            return _error(503, "ServiceUnavailable",
                          f"the controller's store cannot be reached now{cause}; {outcome}")
        log.error("store error: %s", exc)
        return _error(500, "StoreError", "the controller's store failed; see its log")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)

    async def unexpected(_: Request, exc: Exception) -> Response:
        # a bug or an I/O failure below us: logged with its traceback, answered in our shape
        log.error("unexpected error: %r", exc, exc_info=exc)
        return _error(500, "InternalError", "the controller failed; see its log")

    app.add_exception_handler(StoreError, store_error)
    app.add_exception_handler(Exception, unexpected)


def _query(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


def _wrapper(name: str, field: str, inner: type[BaseModel]) -> type[BaseModel]:
    definitions: dict[str, Any] = {field: (inner, ...)}
    model: type[BaseModel] = create_model(
        name, __config__=ConfigDict(extra="forbid"), **definitions
    )
    return model


def _body(body: BaseModel, field: str) -> dict[str, Any]:
    inner = getattr(body, field)
    assert isinstance(inner, BaseModel)
    # python mode keeps NaN as NaN, so the service refuses it instead of storing null
    return inner.model_dump(by_alias=True, exclude_unset=True, mode="python")


def _crud(
    app: FastAPI,
    singular: str,
    plural: str,
    fields: Sequence[str],
    create_body: type[BaseModel],
    update_body: type[BaseModel],
    do_create: Callable[..., Doc],
    do_update: Callable[[Controller, Caller, str, Any], Doc],
    do_delete: Callable[[Controller, Caller, str], None],
    bulk: bool = False,
    view: Callable[[Doc], Doc] = public,
) -> None:
    """list / show / create / update / delete of one resource; `view` makes a stored
    document the API's answer."""
    path = f"/v2.0/{plural}"
    title = singular.capitalize()

    def list_(request: Request, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        query = _query(request)
        docs, revision = list_resource(ctl, caller, singular, query, fields, view)
        body: dict[str, Any] = {plural: docs}
        if "limit" in query and docs and len(docs) == int(query["limit"][-1]):
            # a full page: Neutron's link to the next one (an empty page ends the walk)
            last = docs[-1].get("id")
            if last is not None:
                href = str(request.url.include_query_params(marker=last))
                body[f"{plural}_links"] = [{"rel": "next", "href": href}]
        return JSONResponse(body, headers={REVISION_HEADER: str(revision)})

    def show(
        request: Request, item_id: str, token: Token = None, fields: Fields = None
    ) -> Response:
        ctl, caller = _auth(request, token)
        found = show_resource(ctl, caller, singular, item_id, fields or [], view)
        return JSONResponse({singular: found})

    def create(request: Request, body: Any, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        if bulk and hasattr(body, plural):
            # Neutron's bulk form {"ports": [...]}: one transaction, all or nothing
            items = [
                item.model_dump(by_alias=True, exclude_unset=True, mode="python")
                for item in getattr(body, plural)
            ]
            docs = create_many(ctl, caller, do_create, items, plural)
            return JSONResponse({plural: [view(d) for d in docs]}, 201)
        return JSONResponse({singular: view(do_create(ctl, caller, _body(body, singular)))}, 201)

    def update(request: Request, item_id: str, body: Any, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        doc = do_update(ctl, caller, item_id, _body(body, singular))
        return JSONResponse({singular: view(doc)})

    def delete(request: Request, item_id: str, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        do_delete(ctl, caller, item_id)
        return Response(status_code=204)

    # the body models are only known here; FastAPI reads them from the annotations
    one = _wrapper(f"{title}CreateRequest", singular, create_body)
    if bulk:
        definitions: dict[str, Any] = {plural: (list[create_body], ...)}  # type: ignore[valid-type]
        many = create_model(
            f"{title}BulkCreateRequest", __config__=ConfigDict(extra="forbid"), **definitions
        )
        create.__annotations__["body"] = one | many
    else:
        create.__annotations__["body"] = one
    update.__annotations__["body"] = _wrapper(f"{title}UpdateRequest", singular, update_body)
    tags: list[str | Enum] = [plural]
    app.get(path, tags=tags, summary=f"List {plural}")(list_)
    app.post(path, tags=tags, status_code=201, summary=f"Create a {singular}")(create)
    app.get(f"{path}/{{item_id}}", tags=tags, summary=f"Show a {singular}")(show)
    app.put(f"{path}/{{item_id}}", tags=tags, summary=f"Update a {singular}")(update)
    app.delete(f"{path}/{{item_id}}", tags=tags, status_code=204, summary=f"Delete a {singular}")(
        delete
    )


def _auth(request: Request, token: str | None) -> tuple[Controller, Caller]:
    ctl: Controller = request.app.state.ctl
    config = ctl.config
    if config.auth_strategy == "noauth":
        return ctl, _noauth_caller(ctl, token)
    caller = configured_caller(config.admin_token, config.agent_token, token)
    if caller is None:  # a project token: look its hash up
        with ctl.store.read() as txn:
            caller = authenticate(txn, config.admin_token, config.agent_token, token)
    return ctl, caller


async def _auth_async(request: Request, token: str | None) -> tuple[Controller, Caller]:
    """`_auth` for the async routes every agent calls twice a second (its long polls): the
    configured tokens are told on the event loop; only a project token's lookup in the store
    goes to a thread (a thread per poll was most of what an idle poll cost)."""
    ctl: Controller = request.app.state.ctl
    config = ctl.config
    if config.auth_strategy != "noauth":
        caller = configured_caller(config.admin_token, config.agent_token, token)
        if caller is not None:
            return ctl, caller
    return await asyncio.to_thread(_auth, request, token)


def _noauth_caller(ctl: Controller, token: str | None) -> Caller:
    """Neutron's `auth_strategy = noauth`: every request is admin (keystoneauth's `none`
    plugin sends the token "notused"), except that a valid agent or project token keeps its
    narrower rights, so agents and projects behave as with tokens."""
    config = ctl.config
    try:
        with ctl.store.read() as txn:
            return authenticate(txn, config.admin_token, config.agent_token, token)
    except Unauthorized:
        return ADMIN


def _agent_routes(app: FastAPI) -> None:
    tags: list[str | Enum] = ["agents"]
    register_body = _wrapper("AgentRegisterRequest", "agent", schemas.AgentRegister)
    update_body = _wrapper("AgentUpdateRequest", "agent", schemas.AgentUpdate)
    heartbeat_body = _wrapper("AgentHeartbeatRequest", "agent", schemas.AgentHeartbeat)

    @app.get("/v2.0/agents", tags=tags, summary="List agents (admin, agent)")
    def list_agents(request: Request, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        caller.require_admin_or_agent("listing agents")
        docs, revision = list_resource(
            ctl, caller, "agent", _query(request), agents.FIELDS, agents.viewer(ctl)
        )
        return JSONResponse({"agents": docs}, headers={REVISION_HEADER: str(revision)})

    @app.get("/v2.0/agents/{item_id}", tags=tags, summary="Show an agent (admin, agent)")
    def show_agent(
        request: Request, item_id: str, token: Token = None, fields: Fields = None
    ) -> Response:
        ctl, caller = _auth(request, token)
        caller.require_admin_or_agent("showing an agent")
        doc = show_resource(
            ctl, caller, "agent", item_id, fields or [], lambda d: agents.view(ctl, d)
        )
        return JSONResponse({"agent": doc})

    def register(request: Request, body: Any, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        doc, created = agents.register(ctl, caller, _body(body, "agent"))
        return JSONResponse({"agent": doc}, 201 if created else 200)

    def heartbeat(
        request: Request, item_id: str, body: Any = None, token: Token = None
    ) -> Response:
        ctl, caller = _auth(request, token)
        data = _body(body, "agent") if body is not None else {}
        return JSONResponse({"agent": agents.heartbeat(ctl, caller, item_id, data)})

    def update(request: Request, item_id: str, body: Any, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        return JSONResponse({"agent": agents.update(ctl, caller, item_id, _body(body, "agent"))})

    @app.delete("/v2.0/agents/{item_id}", tags=tags, status_code=204, summary="Delete an agent")
    def delete_agent(request: Request, item_id: str, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        agents.delete(ctl, caller, item_id)
        return Response(status_code=204)

    register.__annotations__["body"] = register_body
    heartbeat.__annotations__["body"] = heartbeat_body | None
    update.__annotations__["body"] = update_body
    app.post(
        "/v2.0/agents",
        tags=tags,
        status_code=201,
        summary="Register an agent (or refresh it on restart; 200 then)",
    )(register)
    app.post(
        "/v2.0/agents/{item_id}/heartbeat", tags=tags, summary="Report that an agent is alive"
    )(heartbeat)
    app.put("/v2.0/agents/{item_id}", tags=tags, summary="Update an agent (admin)")(update)

    def report_statuses(request: Request, body: Any, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        data = body.model_dump(by_alias=True, exclude_unset=True, mode="python")
        return JSONResponse(port_status.report(ctl, caller, data).body())

    report_statuses.__annotations__["body"] = schemas.PortStatusReport
    app.put(
        "/v2.0/port_statuses", tags=["ports"],
        summary="Set the status of many ports in one transaction (admin, agent): "
        "Neutron's update_device_list",
    )(report_statuses)

    @app.get("/v2.0/tunnels", tags=tags,
             summary="Tunnels and their BFD state, as each agent reports them (admin, agent)")
    def list_tunnels(request: Request, host: str | None = None, state: str | None = None,
                     token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        if state is not None and state not in ("up", "down", "init", "admin_down"):
            raise BadRequest(f"state {state!r}: one of up, down, init, admin_down",
                             "InvalidInput")
        return JSONResponse({"tunnels": agents.tunnels(ctl, caller, host, state)})


def _other_routes(app: FastAPI) -> None:
    token_body = _wrapper("TokenCreateRequest", "token", schemas.TokenCreate)

    _discovery_routes(app)

    def create_token(request: Request, body: Any, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        doc = projects.create_token(ctl, caller, _body(body, "token"), new_token())
        return JSONResponse({"token": doc}, 201)

    create_token.__annotations__["body"] = token_body
    app.post("/v2.0/tokens", tags=["tokens"], status_code=201, summary="Create a token (admin)")(
        create_token
    )

    @app.delete("/v2.0/tokens/{secret}", tags=["tokens"], status_code=204, summary="Revoke")
    def delete_token(request: Request, secret: str, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        projects.delete_token(ctl, caller, secret)
        return Response(status_code=204)

    @app.get("/v2.0/l2population", tags=["agents"], summary="Ports per host per network")
    def l2population(
        request: Request,
        token: Token = None,
        network_id: str | None = None,
        host: str | None = None,
    ) -> Response:
        ctl, caller = _auth(request, token)
        entries, revision = l2pop.l2population(ctl, caller, network_id, host)
        return JSONResponse({"l2population": entries}, headers={REVISION_HEADER: str(revision)})

    @app.get(
        "/v2.0/watch",
        tags=["watch"],
        summary="Stream changes after a revision (NDJSON)",
        response_class=StreamingResponse,
    )
    def watch_(
        request: Request,
        token: Token = None,
        since: Annotated[int | None, Query(ge=0)] = None,
        timeout: Annotated[float | None, Query(gt=0, le=86400)] = None,
        host: Host = None,
    ) -> Response:
        _, caller = _auth(request, token)
        return StreamingResponse(
            watch.stream(request.app.state.hub, caller, since, timeout, host),
            media_type="application/x-ndjson",
        )


# the collections `GET /v2.0` lists, as Neutron's API root does
_RESOURCES = ("network", "subnet", "port", "segment", "agent", "extension")


def _discovery_routes(app: FastAPI) -> None:
    """Version discovery as keystoneauth does it against Neutron (`GET /` then the version's
    `self` link), and the extension list clients consult. No token needed: nothing here is
    a secret, and `auth_type: none` clients discover before they have one."""
    tags: list[str | Enum] = ["versions"]

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @app.get("/", tags=tags, summary="API versions (no token needed)")
    def versions(request: Request) -> dict[str, Any]:
        link = {"rel": "self", "href": f"{base(request)}/v2.0/"}
        return {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [link],
                              "tunnelnet": __version__}]}  # fmt: skip

    def resources(request: Request) -> dict[str, Any]:
        return {
            "resources": [
                {"name": name, "collection": f"{name}s",
                 "links": [{"rel": "self", "href": f"{base(request)}/v2.0/{name}s"}]}
                for name in _RESOURCES
            ]
        }  # fmt: skip

    for path in ("/v2.0", "/v2.0/"):
        app.get(path, tags=tags, summary="The v2.0 resources (no token needed)")(resources)

    @app.get("/v2.0/extensions", tags=tags, summary="The Neutron extensions tunnelnet implements")
    def list_extensions() -> dict[str, Any]:
        return {"extensions": extensions.listing()}

    @app.get("/v2.0/extensions/{alias}", tags=tags, summary="One extension, by alias")
    def show_extension(alias: str) -> dict[str, Any]:
        return {"extension": extensions.show(alias)}

    @app.get("/v2.0/segments", tags=["segments"], summary="Segments (one per network)")
    def list_segments(request: Request, token: Token = None) -> Response:
        ctl, caller = _auth(request, token)
        docs, revision = segment_views.list_segments(ctl, caller, _query(request))
        return JSONResponse({"segments": docs}, headers={REVISION_HEADER: str(revision)})

    def read_only(request: Request, token: Token = None) -> Response:
        _auth(request, token)
        segment_views.refuse_change()
        raise AssertionError("unreachable")

    app.post("/v2.0/segments", tags=["segments"], summary="Refused: segments are read-only",
             status_code=405)(read_only)  # fmt: skip
    for method in (app.put, app.delete):
        method("/v2.0/segments/{item_id}", tags=["segments"], status_code=405,
               summary="Refused: segments are read-only")(read_only)  # fmt: skip

    @app.get("/v2.0/segments/{item_id}", tags=["segments"], summary="Show a segment")
    def show_segment(
        request: Request, item_id: str, token: Token = None, fields: Fields = None
    ) -> Response:
        ctl, caller = _auth(request, token)
        doc = segment_views.show_segment(ctl, caller, item_id)
        wanted = [f for value in fields or [] for f in value.split(",") if f]
        return JSONResponse({"segment": select(doc, wanted) if wanted else doc})


def _snapshot_routes(app: FastAPI) -> None:
    @app.get("/v2.0/snapshot", tags=["watch"], summary="Everything visible, at one revision")
    def snapshot(request: Request, token: Token = None, host: Host = None) -> Response:
        ctl, caller = _auth(request, token)
        kinds = ("network", "subnet", "port", "agent") if caller.sees_all else (
            "network", "subnet", "port")  # fmt: skip
        view_agent = agents.viewer(ctl)
        with ctl.store.read() as txn:
            found = {kind: list_visible(txn, caller, kind) for kind in kinds}
            if host is not None:
                # what the watch with this host follows (server/fanout.py)
                found = fanout.listing_for(host, found)
            body: dict[str, Any] = {
                f"{kind}s": [view_agent(d) if kind == "agent" else public(d) for d in docs]
                for kind, docs in found.items()
            }
            body["revision"] = txn.revision
        return JSONResponse({"snapshot": body}, headers={REVISION_HEADER: str(body["revision"])})

    @app.get("/v2.0/watch/ports", tags=["watch"], summary="A network's ports, for an agent")
    async def network_ports(
        request: Request,
        token: Token = None,
        # optional to FastAPI so that a request with a bad token is refused for its token
        # (401) before anything of it is judged; required below
        network_id: Annotated[str | None, Query(max_length=255)] = None,
        since: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        """What an agent lists when it gets its first port on a network (its watch names its
        host, so it had none of that network's port events): every port of the network at a
        revision not older than `since`, from the watch hub's memory (server/fanout.py)."""
        ctl, caller = await _auth_async(request, token)
        caller.require_admin_or_agent("a network's ports")
        if not network_id:
            raise BadRequest("network_id: a network's id is required")
        held = await request.app.state.hub.network_listing(network_id, since, timeout=5.0)
        if held is not None:  # encoded by the hub, each document once per version
            body, revision = held
            return Response(body, media_type="application/json",
                            headers={REVISION_HEADER: str(revision)})
        # the hub is behind: the store has them, at a cost
        network, docs, revision = await asyncio.to_thread(_store_network, ctl, network_id)
        if revision < since:
            return _stale(since)
        return JSONResponse({"network": network, "ports": docs, "revision": revision},
                            headers={REVISION_HEADER: str(revision)})

    @app.get("/v2.0/events", tags=["watch"], summary="Long poll: changes after a revision")
    async def events(
        request: Request,
        token: Token = None,
        since: Annotated[int, Query(ge=0)] = 0,
        timeout: Annotated[float, Query(ge=0, le=300)] = 30.0,
        host: Host = None,
    ) -> Response:
        _, caller = await _auth_async(request, token)
        result = await watch.poll(request.app.state.hub, caller, since, timeout, host)
        if result is None:
            return _error(
                ResyncRequired.STATUS, ResyncRequired.TYPE,
                f"changes after revision {since} are no longer kept; list again and watch "
                "from the revision the list returns",
            )  # fmt: skip
        lines, revision = result
        body = watch.poll_body(lines, revision)
        return Response(body, media_type="application/json",
                        headers={REVISION_HEADER: str(revision)})


def _stale(since: int) -> Response:
    return _error(ResyncRequired.STATUS, ResyncRequired.TYPE,
                  f"revision {since} is newer than the store's: list again")


def _store_network(ctl: Controller, network_id: str) -> tuple[Doc | None, list[Doc], int]:
    with ctl.store.read() as txn:
        network = txn.get("network", network_id)
        found = [public(d) for d in txn.list("port") if d.get("network_id") == network_id]
        return (None if network is None else public(network)), found, txn.revision


async def _housekeeping(ctl: Controller) -> None:
    """Announces agents that stopped reporting, and trims the change log."""
    interval = max(0.2, min(5.0, ctl.config.agent_down_time / 3))
    ticks = 0
    while True:
        await asyncio.sleep(interval)
        ticks += 1
        try:
            changed = await asyncio.to_thread(agents.check_liveness, ctl)
            for agent_id in changed:
                log.info("agent %s changed liveness", agent_id)
            if ticks % 12 == 0:
                await asyncio.to_thread(ctl.store.compact, ctl.config.event_retention)
        except StoreError as exc:  # keep serving; the next tick retries
            log.error("housekeeping failed: %s", exc)


def create_app(ctl: Controller) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(agents.ensure_index, ctl)
        await asyncio.to_thread(agents.adopt_heartbeats, ctl)
        hub = watch.Hub(ctl, keep=min(ctl.config.event_retention, 20_000))
        await hub.start()
        app.state.hub = hub
        task = asyncio.create_task(_housekeeping(ctl))
        try:
            yield
        finally:
            await hub.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="tunnelnet controller",
        version=__version__,
        description="Tenants, networks, subnets, ports and agents (OpenStack Networking v2.0 "
        "shaped), with a watch stream for agents.",
        lifespan=lifespan,
        # the routes that answer a dict (discovery, extensions) encode as the others do
        default_response_class=JSONResponse,
    )
    app.state.ctl = ctl
    app.add_middleware(TokenGate, enabled=lambda: ctl.config.auth_strategy != "noauth")
    # outermost of ours: an agent's long poll and listing skip the routing (agent_fast_path.py)
    app.add_middleware(AgentFastPath, controller=lambda: ctl,
                       hub=lambda: getattr(app.state, "hub", None))
    if ctl.config.auth_strategy == "noauth":
        log.warning("auth_strategy is noauth: any request without a valid token acts as admin")
    _install_error_handlers(app)
    for singular, module, create_body, update_body, bulk, view in (
        ("network", networks, schemas.NetworkCreate, schemas.NetworkUpdate, True, networks.view),
        ("subnet", subnets, schemas.SubnetCreate, schemas.SubnetUpdate, True, subnets.view),
        ("port", ports, schemas.PortCreate, schemas.PortUpdate, True, ports.view),
        ("project", projects, schemas.ProjectCreate, schemas.ProjectUpdate, False, public),
    ):
        _crud(app, singular, f"{singular}s", module.FIELDS, create_body, update_body,
              module.create, module.update, module.delete, bulk=bulk, view=view)  # fmt: skip
    _agent_routes(app)
    _other_routes(app)
    _snapshot_routes(app)
    return app
