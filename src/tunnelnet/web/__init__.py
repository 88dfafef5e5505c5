"""The lab as a web page: topology, live state, a flow table per bridge, an animated trace.

One static page (no build step, cytoscape.js vendored under static/vendor) and a small JSON
API over a ``LabView`` (``tunnelnet.trace.view``), served by ``tunnelnet web``.
"""
