"""The controller (`tunnelnet server`): the source of truth, in the role neutron-server plays.

HTTP JSON on 127.0.0.1:9696 by default (and optionally a unix socket), shaped like OpenStack
Networking v2.0:

    /v2.0/networks, /subnets, /ports, /projects   list (filters: ?field=value, repeated = any;
                                                  ?fields=a&fields=b), show, create, update,
                                                  delete; bodies wrapped {"network": {...}}
    /v2.0/agents                                  list, show, register (POST), update, delete,
    /v2.0/agents/{id}/heartbeat                   heartbeat (POST)
    /v2.0/tokens                                  create (admin), DELETE /v2.0/tokens/{secret}
    /v2.0/snapshot                                networks, subnets, ports, agents + revision
    /v2.0/events?since=R&timeout=S                long poll; 410 ResyncRequired when R is gone
    /v2.0/watch?since=R[&timeout=S]               NDJSON stream (events, bookmarks, resync)
    /v2.0/l2population[?network_id=&host=]        ports per host per network, tunnel IPs
    /, /v2.0                                      version discovery, resources (no token)
    /v2.0/extensions[/{alias}]                    the Neutron extensions implemented
    /v2.0/segments[/{id}]                         one read-only segment per network

Lists carry `X-Tunnelnet-Revision`: watch from it and nothing is missed. Errors are
Neutron's `{"NeutronError": {"type", "message", "detail"}}` with 400/401/403/404/405/409/410.
Tokens go in `X-Auth-Token`:
admin (TUNNELNET_ADMIN_TOKEN or config), agent (TUNNELNET_AGENT_TOKEN, or made by admin), and
project tokens (admin-made, stored hashed); a project sees only its own resources and gets the
same 404 for another project's ids as for ids that do not exist. With Neutron's
`auth_strategy = "noauth"` (config or TUNNELNET_AUTH_STRATEGY) a request without a valid
token acts as admin, for a standalone controller.

Neutron's own clients work unchanged, as against a standalone Neutron:
`openstack --os-auth-type admin_token --os-endpoint http://127.0.0.1:9696 --os-token TOKEN
network list`, or `openstack.connect(auth_type="admin_token", auth={"endpoint": URL,
"token": TOKEN})`, or `auth_type: none` with an endpoint against a noauth controller.

Layout: model and rules in plain modules (segments, ipam, macs, networks, subnets, ports,
agents, projects, l2pop), persistence behind tunnelnet.store, the REST layer in app.py, the
watch machinery in watch.py, process running in runner.py.
"""
