"""The engine without a management cluster: `rke2fleet plan | apply | export`, state in a local
directory, then adoption by the operator."""
