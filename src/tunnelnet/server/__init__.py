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

Lists carry `X-Tunnelnet-Revision`: watch from it and nothing is missed. Errors are
Neutron's `{"NeutronError": {"type", "message", "detail"}}` with 400/401/403/404/409/410.
Tokens go in `X-Auth-Token`:
admin (TUNNELNET_ADMIN_TOKEN or config), agent (TUNNELNET_AGENT_TOKEN, or made by admin), and
project tokens (admin-made, stored hashed); a project sees only its own resources and gets the
same 404 for another project's ids as for ids that do not exist.

Layout: model and rules in plain modules (segments, ipam, macs, networks, subnets, ports,
agents, projects, l2pop), persistence behind tunnelnet.store, the REST layer in app.py, the
watch machinery in watch.py, process running in runner.py.
"""
