"""The stack layout: one value (:class:`~._stack.Stack`) and the only functions that read
or change where a stack sits in a tree, in which form, on which axis. The public names are
re-exported by :mod:`composed_lifts.layout`."""
