"""syncd: a directory synchronization daemon.

One run of a job is read -> map -> plan -> gates -> apply -> commit; see
:mod:`syncd.engine` for where each step happens.
"""

__version__ = "0.1.0"
