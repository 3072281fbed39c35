"""Members of a gateway and their roles; every change audited in the same transaction."""

from __future__ import annotations

from fnstage.domain.errors import Conflict, InvalidInput, NotFound
from fnstage.domain.names import check_gateway_id
from fnstage.service.identity import Actor
from fnstage.service.roles import OWNER, check_role
from fnstage.store import access
from fnstage.store.access import MemberRecord
from fnstage.store.store import Store, Tx


def no_gateway(gateway_id: str) -> NotFound:
    """THE answer for a gateway that does not exist or that the caller may not know about."""
    return NotFound(f"no gateway {gateway_id!r}", field="gateway")


class Members:
    def __init__(self, store: Store) -> None:
        self.store = store

    def role_of(self, actor: Actor, gateway_id: str) -> str | None:
        """The actor's role on the gateway: an admin is an owner of every gateway that exists."""
        with self.store.read() as tx:
            return self.role_in(tx, actor, gateway_id)

    @staticmethod
    def role_in(tx: Tx, actor: Actor, gateway_id: str) -> str | None:
        """`role_of` inside a transaction of the caller's."""
        if actor.is_admin:
            return OWNER if tx.get_gateway(gateway_id) is not None else None
        return access.role_of(tx, gateway_id, actor.user_id)

    def visible_gateways(self, actor: Actor) -> set[str] | None:
        """The gateways the actor may know about; None: every gateway (an admin)."""
        if actor.is_admin:
            return None
        with self.store.read() as tx:
            return access.gateways_of(tx, actor.user_id)

    def list(self, gateway_id: str) -> list[MemberRecord]:
        with self.store.read() as tx:
            return access.list_members(tx, gateway_id)

    def set(self, actor: Actor, gateway_id: str, user_name: str, role: str) -> MemberRecord:
        """Add `user_name` to the gateway with `role`, or change the role they have."""
        check_gateway_id(gateway_id)
        check_role(role)
        with self.store.write() as tx:
            user_id = self._user(tx, user_name)
            before = access.role_of(tx, gateway_id, user_id)
            if before == OWNER and role != OWNER:
                self._keep_an_owner(tx, gateway_id, user_name)
            access.set_member(tx, gateway_id, user_id, role, actor.name)
            if before != role:
                action = "member.add" if before is None else "member.role"
                access.record_audit(tx, actor.name, action, user_name, gateway_id, role=role, before=before)
            return next(m for m in access.list_members(tx, gateway_id) if m.user_id == user_id)

    def remove(self, actor: Actor, gateway_id: str, user_name: str) -> None:
        with self.store.write() as tx:
            user_id = self._user(tx, user_name)
            before = access.role_of(tx, gateway_id, user_id)
            if before is None:
                raise NotFound(f"{user_name} is not a member of gateway {gateway_id}", field="user")
            if before == OWNER:
                self._keep_an_owner(tx, gateway_id, user_name)
            access.remove_member(tx, gateway_id, user_id)
            access.record_audit(tx, actor.name, "member.remove", user_name, gateway_id, before=before)

    @staticmethod
    def _user(tx: Tx, name: str) -> int:
        if not isinstance(name, str) or not name or len(name) > 64:
            raise InvalidInput("a user name is 1 to 64 characters", field="user")
        user = tx.get_user_by_name(name)
        if user is None:
            raise NotFound(
                f"no user {name!r}: an admin creates users with `fnstage user create`", field="user"
            )
        return user.id

    @staticmethod
    def _keep_an_owner(tx: Tx, gateway_id: str, user_name: str) -> None:
        if access.count_role(tx, gateway_id, OWNER) <= 1:
            raise Conflict(
                f"{user_name} is the last owner of gateway {gateway_id}: make someone else owner first",
                field="user",
            )
