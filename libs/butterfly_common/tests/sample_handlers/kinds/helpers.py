from butterfly_common import api, retstat


@api
def imported_helper(req):
    """Decorated, but in a module the app imports: only its own module path counts."""
    return retstat.OK
