"""A handler over the database: the connection must be back in the pool after each call."""

import peewee

from butterfly_common import Request, api, retstat
from butterfly_common.db import database
from butterfly_common.paging import page_query


class Note(peewee.Model):
    text = peewee.CharField(max_length=200)

    class Meta:
        database = database
        table_name = "bf_test_note"


@api
def add(req: Request, text: str):
    note = Note.create(text=text)
    return retstat.OK, {"id": note.id}


@api
def notes(req: Request, page_index: int = 1, page_size: int = 20):
    query = Note.select().order_by(Note.id)
    return retstat.OK, {"data": page_query(query, page_index, page_size,
                                           lambda n: {"id": n.id, "text": n.text})}
