from butterfly_common import Request, api, retstat


@api
def imported_helper(req: Request):
    """Decorated, but in a module the app imports: only its own module path counts."""
    return retstat.OK
