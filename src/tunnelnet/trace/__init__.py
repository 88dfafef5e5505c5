"""The end-to-end journey of one packet from a VM to another, across every switch on the way.

Each step is read from the running switch that holds the table (the same lookup its datapath
does), never from a model of what the tables ought to be. ``view`` is the small interface a lab
offers (real namespaces or simulation), ``journey`` walks it, ``live`` checks a prediction
against the wire.
"""
