"""The one executor of both commands (``executor``): it carries out the planner's actions,
with its upload side (``sender``) and delete side (``deleter``); deletes wait in a ``spool``."""
