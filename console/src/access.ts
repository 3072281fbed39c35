// The access page of a gateway: who may do what (members and their roles), and your own API tokens.
// Everything goes through the same API as `fnstage member` and `fnstage token`; the API decides who may
// change what (owners manage members) and words every refusal, which is shown as it comes.

import { api, ApiError, gw, type Member, type Schemas, type Token } from "./api";
import { clear, h, timeAgo } from "./util";

const ROLES = ["viewer", "developer", "releaser", "owner"] as const;
const ROLE_HINT: Record<string, string> = {
  viewer: "reads functions, history and logs",
  developer: "+ saves to dev",
  releaser: "+ promotes, releases and rolls back",
  owner: "+ manages members and gateway settings",
};

function errorText(): HTMLParagraphElement {
  return h("p", { class: "error-text", role: "alert" });
}

function fail(target: HTMLElement, err: unknown): void {
  target.textContent = err instanceof ApiError || err instanceof Error ? err.message : String(err);
}

export function renderAccess(container: HTMLElement, gateway: string): void {
  const membersBody = h("tbody");
  const tokensBody = h("tbody");
  const membersError = errorText();
  const tokensError = errorText();

  async function loadMembers(): Promise<void> {
    let members: Member[];
    try {
      members = (await api.get<Schemas["Members"]>(`${gw(gateway)}/members`)).members;
    } catch (err) {
      fail(membersError, err);
      return;
    }
    clear(
      membersBody,
      members.map((m) => {
        const role = h(
          "select",
          {
            "aria-label": `Role of ${m.user}`,
            onchange: async () => {
              membersError.textContent = "";
              try {
                await api.put(`${gw(gateway)}/members/${encodeURIComponent(m.user)}`, { role: role.value });
              } catch (err) {
                role.value = m.role;
                fail(membersError, err);
              }
              await loadMembers();
            },
          },
          ROLES.map((r) => h("option", { value: r, selected: r === m.role }, r)),
        );
        return h(
          "tr",
          { "data-user": m.user },
          h("td", { class: "mono" }, m.user),
          h("td", null, role),
          h("td", { class: "muted" }, `${timeAgo(m.added_at)} by ${m.added_by}`),
          h(
            "td",
            { class: "actions" },
            h(
              "button",
              {
                class: "btn ghost small",
                type: "button",
                onclick: async () => {
                  if (!window.confirm(`Remove ${m.user} from ${gateway}? They lose access at once.`)) return;
                  membersError.textContent = "";
                  try {
                    await api.del(`${gw(gateway)}/members/${encodeURIComponent(m.user)}`);
                  } catch (err) {
                    fail(membersError, err);
                  }
                  await loadMembers();
                },
              },
              "Remove",
            ),
          ),
        );
      }),
    );
  }

  async function loadTokens(): Promise<void> {
    let tokens: Token[];
    try {
      tokens = (await api.get<Schemas["Tokens"]>("tokens")).tokens;
    } catch (err) {
      fail(tokensError, err);
      return;
    }
    clear(
      tokensBody,
      tokens.map((t) => {
        const state = t.revoked_at ? "revoked" : t.expires_at && Date.parse(t.expires_at) <= Date.now() ? "expired" : "active";
        return h(
          "tr",
          { "data-token": t.name },
          h("td", { class: "mono" }, t.name),
          h("td", { class: "muted" }, timeAgo(t.created_at)),
          h("td", { class: "muted" }, t.last_used_at ? timeAgo(t.last_used_at) : "never"),
          h("td", { class: "muted" }, t.expires_at ? new Date(t.expires_at).toLocaleDateString() : "never"),
          h("td", null, h("span", { class: `pill ${state === "active" ? "live" : "failed"}` }, state)),
          h(
            "td",
            { class: "actions" },
            state === "active"
              ? h(
                  "button",
                  {
                    class: "btn ghost small",
                    type: "button",
                    onclick: async () => {
                      if (!window.confirm(`Revoke the token ${t.name}? Whatever uses it is refused from its next request.`)) return;
                      tokensError.textContent = "";
                      try {
                        await api.del(`tokens/${t.id}`);
                      } catch (err) {
                        fail(tokensError, err);
                      }
                      await loadTokens();
                    },
                  },
                  "Revoke",
                )
              : null,
          ),
        );
      }),
    );
  }

  const userInput = h("input", { id: "member-user", class: "mono", placeholder: "ada", autocomplete: "off", spellcheck: "false", required: true });
  const roleInput = h("select", { id: "member-role" }, ROLES.map((r) => h("option", { value: r, selected: r === "developer" }, `${r}: ${ROLE_HINT[r]}`)));
  const addMember = h(
    "form",
    {
      class: "inline access-form",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        membersError.textContent = "";
        try {
          await api.put(`${gw(gateway)}/members/${encodeURIComponent(userInput.value.trim())}`, { role: roleInput.value });
          userInput.value = "";
        } catch (err) {
          fail(membersError, err);
        }
        await loadMembers();
      },
    },
    h("label", { class: "label", for: "member-user" }, "User"),
    userInput,
    h("label", { class: "label", for: "member-role" }, "Role"),
    roleInput,
    h("button", { class: "btn", type: "submit" }, "Add or change"),
  );

  const secret = h("div", { class: "secret", hidden: true, "aria-live": "polite" });
  const nameInput = h("input", { id: "token-name", class: "mono", placeholder: "laptop", autocomplete: "off", spellcheck: "false", required: true, maxlength: "64" });
  const daysInput = h("input", { id: "token-days", type: "number", min: "1", max: "3650", placeholder: "until revoked" });
  const createToken = h(
    "form",
    {
      class: "inline access-form",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        tokensError.textContent = "";
        const body: Record<string, unknown> = { name: nameInput.value.trim() };
        if (daysInput.value) body.expires_in_seconds = Number(daysInput.value) * 86400;
        try {
          const made = await api.post<Schemas["NewToken"]>("tokens", body);
          nameInput.value = "";
          daysInput.value = "";
          clear(
            secret,
            h("p", null, h("strong", null, `Token ${made.name} created.`), " Copy it now: it is shown only once."),
            h("code", { class: "mono", "data-testid": "token-secret" }, made.secret),
          );
          secret.hidden = false;
        } catch (err) {
          fail(tokensError, err);
        }
        await loadTokens();
      },
    },
    h("label", { class: "label", for: "token-name" }, "Name"),
    nameInput,
    h("label", { class: "label", for: "token-days" }, "Expires in (days)"),
    daysInput,
    h("button", { class: "btn", type: "submit" }, "Create token"),
  );

  const table = (headers: string[], body: HTMLElement) =>
    h("table", { class: "table" }, h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col" }, x || h("span", { class: "sr-only" }, "Actions"))))), body);

  clear(
    container,
    h(
      "section",
      { class: "panel access", "aria-labelledby": "members-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "members-title" }, "Members"), h("span", { class: "muted small" }, "Owners add, change and remove members; the last owner stays.")),
      h("div", { class: "panel-body" }, table(["User", "Role", "Added", ""], membersBody), addMember, membersError),
    ),
    h(
      "section",
      { class: "panel access", "aria-labelledby": "tokens-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "tokens-title" }, "Your API tokens"), h("span", { class: "muted small" }, "For the CLI and scripts: export FNSTAGE_TOKEN=...")),
      h("div", { class: "panel-body" }, table(["Name", "Created", "Last used", "Expires", "State", ""], tokensBody), createToken, secret, tokensError),
    ),
  );
  void loadMembers();
  void loadTokens();
}
