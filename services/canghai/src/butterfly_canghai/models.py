"""huoyan's tables: console users (argon2 hashes, roles) and the audit log."""

from __future__ import annotations

import time

import peewee

from butterfly_common import db


class BaseModel(peewee.Model):
    class Meta:
        database = db.database


class User(BaseModel):
    """A console user. ``epoch`` grows on every password or role change: sessions and
    tokens carry it, so a change signs the user out everywhere."""

    id = peewee.AutoField()
    username = peewee.CharField(max_length=64, unique=True)
    password_hash = peewee.CharField(max_length=255)
    role = peewee.CharField(max_length=16)
    epoch = peewee.IntegerField(default=1)
    created_at = peewee.FloatField(default=time.time)
    updated_at = peewee.FloatField(default=time.time)

    class Meta:
        table_name = "canghai_user"


class Audit(BaseModel):
    """Who did what, when, from where, under which request id, and whether it worked."""

    id = peewee.AutoField()
    at = peewee.FloatField(default=time.time, index=True)
    username = peewee.CharField(max_length=64, index=True)
    role = peewee.CharField(max_length=16, default="")
    action = peewee.CharField(max_length=64)
    target = peewee.CharField(max_length=512, default="")
    detail = peewee.TextField(default="")
    ok = peewee.BooleanField(default=True)
    ip = peewee.CharField(max_length=64, default="")
    reqid = peewee.CharField(max_length=32, default="")

    class Meta:
        table_name = "canghai_audit"


MODELS = [User, Audit]
