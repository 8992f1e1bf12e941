"""A scripted browser for the end-to-end tests (stdlib only): cookies, redirects, forms.

It connects to loopback only: every host is either mapped to a loopback address
(`hosts={"app.test": ("127.0.0.1", envoy_port)}`) or is `127.0.0.1` itself (the test
IdP's issuer is `http://127.0.0.1:<port>`). A redirect to any other host is not followed:
`follow` stops there and reports the Location it refused (`response.refused`).

Cookies (RFC 6265, what the tests need):
  - Set-Cookie name/value/Path/Domain/Max-Age/Expires; Max-Age wins over Expires;
    Max-Age <= 0 or an Expires in the past deletes the cookie. Cookies do not depend on
    the port (as in browsers). Host-only unless Domain is given; a Domain that does not
    domain-match the host is ignored (the cookie is refused, as browsers do).
  - `Secure` is recorded but NOT enforced: the tests run over http, so a Secure cookie is
    stored and sent over http (a browser would refuse it). Assert the attribute instead:
    `browser.cookie_attrs("app.test", "name")["secure"]`.
  - `SameSite` is enforced like Chrome (unless `enforce_samesite=False`): a request is
    cross-site when the page that started it (or any URL earlier in its redirect chain) is
    on another site (scheme + host; ports ignored). Cross-site: `Strict` cookies are never
    sent; `Lax` cookies only on GET (top-level navigation); `None` always. A cookie
    without SameSite counts as `samesite_default` ("Lax", Chrome's default, without its
    2-minute "Lax+POST" leniency). So the IdP's form_post page (on 127.0.0.1) POSTing to
    http://app.test/... is cross-site: only SameSite=None cookies go with it.
  - Every hop records the names of the cookies it sent (`Hop.cookies_sent`).

POST requests carry `Origin` (the initiating page's origin, or "null" when none).

Example (the provider alone; app.test is not mapped, so the chain stops at the callback):

    b = Browser()
    r = b.login(authorize_url, "alice", "alice-password")
    r.refused        # 'http://app.test/.barbican/callback?code=...&state=...&iss=...'
    [(h.method, h.status) for h in r.hops]

With Barbican in front of the app (Envoy on `port`):

    b = Browser(hosts={"app.test": ("127.0.0.1", port)})
    r = b.login("http://app.test/private", "alice", "alice-password")
    assert r.status == 200 and r.url == "http://app.test/private"
    b.cookie_attrs("app.test", "barbican_session")   # {'secure': True, 'httponly': True, ...}
"""

from __future__ import annotations

import http.client
import http.cookiejar
import ipaddress
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Mapping, Sequence

REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_HEADERS = (
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("User-Agent", "Mozilla/5.0 (barbican-e2e scripted browser)"),
)


class UnmappedHost(RuntimeError):
    """A request to a host that is neither mapped nor loopback: never sent."""


# ---------------------------------------------------------------------------------------
# responses and hops
# ---------------------------------------------------------------------------------------

@dataclass
class Hop:
    method: str
    url: str
    status: int
    location: str | None          # absolute (resolved against url), redirects only
    cookies_sent: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        loc = f" -> {self.location}" if self.location else ""
        return f"Hop({self.method} {self.url} {self.status}{loc})"


@dataclass
class BrowserResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    url: str                      # the URL this response answered
    method: str = "GET"
    hops: list[Hop] = field(default_factory=list)   # every request of a follow()/login()
    refused: str | None = None    # a Location follow() would not fetch (unmapped host)
    max_hops_reached: bool = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def location(self) -> str | None:
        """The Location header resolved against self.url (None without one)."""
        loc = self.header("Location")
        return urllib.parse.urljoin(self.url, loc) if loc is not None else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def forms(self) -> list["Form"]:
        return parse_forms(self.text, self.url)

    def __repr__(self) -> str:
        return (f"BrowserResponse({self.method} {self.url} -> {self.status}, "
                f"refused={self.refused!r}, body={self.body[:160]!r})")


# ---------------------------------------------------------------------------------------
# forms
# ---------------------------------------------------------------------------------------

@dataclass
class Form:
    action: str                   # absolute URL (the page URL when the action is empty)
    method: str                   # "GET" | "POST"
    fields: list[tuple[str, str]]  # named <input>/<textarea>/<select> values, in order
    input_types: dict[str, str]   # name -> type ("hidden", "password", "text", ...)
    id: str | None = None

    def get(self, name: str) -> str | None:
        for k, v in self.fields:
            if k == name:
                return v
        return None

    @property
    def has_password(self) -> bool:
        return "password" in self.input_types.values()

    @property
    def all_hidden(self) -> bool:
        return all(t == "hidden" for t in self.input_types.values())


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.cur: dict | None = None
        self.textarea: str | None = None
        self.select: str | None = None
        self.scripts: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self.cur = {"action": a.get("action", ""), "method": a.get("method", "get"),
                        "id": a.get("id"), "fields": [], "types": {}}
            self.forms.append(self.cur)
        elif tag == "script":
            self.in_script = True
            self.scripts.append("")
        elif self.cur is not None and tag == "input" and a.get("name"):
            typ = a.get("type", "text").lower()
            if typ in ("submit", "button", "image", "reset", "file"):
                return
            if typ in ("checkbox", "radio") and "checked" not in a:
                return
            self.cur["fields"].append([a["name"], a.get("value", "")])
            self.cur["types"][a["name"]] = typ
        elif self.cur is not None and tag == "textarea" and a.get("name"):
            self.textarea = a["name"]
            self.cur["fields"].append([a["name"], ""])
            self.cur["types"][a["name"]] = "textarea"
        elif self.cur is not None and tag == "select" and a.get("name"):
            self.select = a["name"]
            self.cur["types"][a["name"]] = "select"
        elif self.cur is not None and tag == "option" and self.select and "selected" in a:
            self.cur["fields"].append([self.select, a.get("value", "")])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.cur = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "select":
            self.select = None
        elif tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script and self.scripts:
            self.scripts[-1] += data
        elif self.cur is not None and self.textarea:
            self.cur["fields"][-1][1] += data


def _parse(html: str) -> _FormParser:
    p = _FormParser()
    p.feed(html)
    p.close()
    return p


def parse_forms(html: str, page_url: str) -> list[Form]:
    """Every <form> of a page, actions resolved against page_url."""
    out = []
    for f in _parse(html).forms:
        out.append(Form(action=urllib.parse.urljoin(page_url, f["action"] or page_url),
                        method=f["method"].upper() if f["method"].upper() == "POST" else "GET",
                        fields=[(k, v) for k, v in f["fields"]], input_types=dict(f["types"]),
                        id=f["id"]))
    return out


def auto_form(response: BrowserResponse) -> Form | None:
    """The self-submitting POST form of a page (oidc-provider's form_post response and its
    logout page: a <form method="post"> of hidden inputs plus a script calling submit()).
    Any status: the provider sends form_post *errors* with status 400 (browsers submit
    those too)."""
    if response.status in REDIRECTS or b"<form" not in response.body.lower():
        return None
    parsed = _parse(response.text)
    if not any(".submit()" in s for s in parsed.scripts):
        return None
    forms = parse_forms(response.text, response.url)
    for f in forms:
        if f.method == "POST" and f.all_hidden and f.fields:
            return f
    return None


# ---------------------------------------------------------------------------------------
# cookies
# ---------------------------------------------------------------------------------------

@dataclass
class Cookie:
    name: str
    value: str
    domain: str                   # lower-case host or Domain attribute (no leading dot)
    host_only: bool
    path: str
    secure: bool
    httponly: bool
    samesite: str | None          # "Strict" | "Lax" | "None" | None (attribute absent)
    max_age: int | None
    expires: float | None         # epoch seconds (from Max-Age or Expires); None: session
    raw: str                      # the Set-Cookie header value

    def attrs(self) -> dict[str, Any]:
        return {"value": self.value, "domain": self.domain, "host_only": self.host_only,
                "path": self.path, "secure": self.secure, "httponly": self.httponly,
                "samesite": self.samesite, "max_age": self.max_age,
                "expires": self.expires, "raw": self.raw}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _domain_match(host: str, domain: str) -> bool:
    return host == domain or (not _is_ip(host) and host.endswith("." + domain))


def _default_path(path: str) -> str:
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[:path.rfind("/")]


def _path_match(req_path: str, cookie_path: str) -> bool:
    if req_path == cookie_path:
        return True
    if req_path.startswith(cookie_path):
        return cookie_path.endswith("/") or req_path[len(cookie_path)] == "/"
    return False


class CookieJar:
    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str, str], Cookie] = {}
        self.refused: list[tuple[str, str]] = []   # (host, Set-Cookie) not stored

    def _purge(self, now: float) -> None:
        for k in [k for k, c in self._cookies.items()
                  if c.expires is not None and c.expires <= now]:
            del self._cookies[k]

    def set_from_header(self, host: str, path: str, header: str,
                        now: float | None = None) -> Cookie | None:
        """Store one Set-Cookie received from `host` (no port) for a request to `path`."""
        now = time.time() if now is None else now
        host = host.lower()
        parts = header.split(";")
        nv = parts[0]
        if "=" not in nv:
            self.refused.append((host, header))
            return None
        name, value = (s.strip() for s in nv.split("=", 1))
        if not name:
            self.refused.append((host, header))
            return None
        domain, cpath, secure, httponly, samesite = None, None, False, False, None
        max_age: int | None = None
        expires: float | None = None
        for attr in parts[1:]:
            k, _, v = attr.partition("=")
            k, v = k.strip().lower(), v.strip()
            if k == "domain" and v:
                domain = v.lstrip(".").lower()
            elif k == "path":
                cpath = v if v.startswith("/") else None
            elif k == "secure":
                secure = True
            elif k == "httponly":
                httponly = True
            elif k == "samesite":
                samesite = {"strict": "Strict", "lax": "Lax", "none": "None"}.get(v.lower(), v)
            elif k == "max-age":
                try:
                    max_age = int(v)
                except ValueError:
                    pass
            elif k == "expires":
                t = http.cookiejar.http2time(v)
                if t is not None:
                    expires = float(t)
        if max_age is not None:
            expires = now + max_age if max_age > 0 else now - 1
        if domain is not None:
            if not _domain_match(host, domain):
                self.refused.append((host, header))
                return None
            host_only = False
        else:
            domain, host_only = host, True
        cpath = cpath or _default_path(path)
        key = (domain, cpath, name)
        if expires is not None and expires <= now:
            self._cookies.pop(key, None)
            return None
        c = Cookie(name, value, domain, host_only, cpath, secure, httponly, samesite,
                   max_age, expires, header)
        self._cookies[key] = c
        return c

    def matching(self, host: str, path: str, now: float | None = None) -> list[Cookie]:
        """Cookies for a request to host (no port) + path, longest path first."""
        self._purge(time.time() if now is None else now)
        host = host.lower()
        out = [c for c in self._cookies.values()
               if (host == c.domain if c.host_only else _domain_match(host, c.domain))
               and _path_match(path, c.path)]
        return sorted(out, key=lambda c: -len(c.path))

    def all(self) -> list[Cookie]:
        self._purge(time.time())
        return list(self._cookies.values())

    def set(self, host: str, name: str, value: str, path: str = "/", **attrs: Any) -> None:
        header = f"{name}={value}; Path={path}" + "".join(
            f"; {k}" if v is True else f"; {k}={v}" for k, v in attrs.items() if v)
        self.set_from_header(host, path, header)

    def delete(self, host: str | None = None, name: str | None = None) -> None:
        for k, c in list(self._cookies.items()):
            if (host is None or c.domain == host.lower()) and (name is None or c.name == name):
                del self._cookies[k]


# ---------------------------------------------------------------------------------------
# the browser
# ---------------------------------------------------------------------------------------

def _site(url: str) -> tuple[str, str]:
    p = urllib.parse.urlsplit(url)
    return (p.scheme.lower(), (p.hostname or "").lower())


def _origin(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


class Browser:
    """A cookie-keeping HTTP client that only ever connects to loopback.

    hosts: "host" or "host:port" (as written in URLs) -> (loopback address, port).
      A URL without a port (or :80) matches "host" or "host:80"; another port only
      "host:port". URLs on 127.0.0.1 / [::1] go
      straight there. Anything else is refused (UnmappedHost; follow() stops instead).

    Example:
        b = Browser(hosts={"app.test": ("127.0.0.1", envoy_port),
                           "app.test:8080": ("127.0.0.1", other_port)})
        r = b.get("http://app.test/x")                  # Host: app.test
        r = b.follow("http://app.test/private")         # r.hops: [Hop(GET ... 302 -> ...)]
        r = b.post("http://app.test/form", form={"a": "1"})
    """

    def __init__(self, hosts: Mapping[str, tuple[str, int]] | None = None, *,
                 enforce_samesite: bool = True, samesite_default: str = "Lax",
                 timeout: float = 10.0,
                 default_headers: Sequence[tuple[str, str]] = DEFAULT_HEADERS) -> None:
        self.hosts = {k.lower(): v for k, v in (hosts or {}).items()}
        for addr, _port in self.hosts.values():
            if not ipaddress.ip_address(addr).is_loopback:
                raise ValueError(f"{addr} is not a loopback address")
        self.jar = CookieJar()
        self.enforce_samesite = enforce_samesite
        self.samesite_default = samesite_default
        self.timeout = timeout
        self.default_headers = list(default_headers)
        self.history: list[Hop] = []   # every request this browser made

    # --- addressing -------------------------------------------------------------------
    def address(self, url: str) -> tuple[str, int] | None:
        """Where a request to `url` connects, or None when the host is not allowed."""
        p = urllib.parse.urlsplit(url)
        if p.scheme != "http" or not p.hostname:
            return None
        host = p.hostname.lower()
        port = p.port or 80
        for key in (host, f"{host}:80") if port == 80 else (f"{host}:{port}",):
            if key in self.hosts:
                return self.hosts[key]
        if host in ("127.0.0.1", "::1"):
            return (host, port)
        return None

    def is_mapped(self, url: str) -> bool:
        return self.address(url) is not None

    # --- cookies ----------------------------------------------------------------------
    def cookie(self, host: str, name: str, path: str | None = None) -> str | None:
        a = self.cookie_attrs(host, name, path)
        return a["value"] if a else None

    def _host_cookies(self, host: str) -> list[Cookie]:
        host = host.lower()
        if not host.startswith("[") and host.count(":") == 1:
            host = host.split(":")[0]  # "app.test:8080": cookies ignore ports
        return [c for c in self.jar.all()
                if (host == c.domain if c.host_only else _domain_match(host, c.domain))]

    def cookie_attrs(self, host: str, name: str, path: str | None = None) -> dict | None:
        """The stored cookie `name` for `host` (a hostname, no port) as a dict: value,
        domain, host_only, path, secure, httponly, samesite, max_age, expires, raw.
        With several paths: exactly `path` if given, else the longest path."""
        found = [c for c in self._host_cookies(host)
                 if c.name == name and (path is None or c.path == path)]
        if not found:
            return None
        return max(found, key=lambda c: len(c.path)).attrs()

    def cookies(self, host: str) -> dict[str, str]:
        """name -> value of every cookie stored for `host` (any path; longest path wins)."""
        return {c.name: c.value
                for c in sorted(self._host_cookies(host), key=lambda c: len(c.path))}

    def _cookies_for(self, url: str, method: str, cross_site: bool) -> list[Cookie]:
        p = urllib.parse.urlsplit(url)
        out = []
        for c in self.jar.matching(p.hostname or "", p.path or "/"):
            if self.enforce_samesite and cross_site:
                ss = c.samesite or self.samesite_default
                if ss == "Strict" or (ss == "Lax" and method != "GET"):
                    continue
            out.append(c)
        return out

    # --- one request ------------------------------------------------------------------
    def request(self, method: str, url: str, *, headers: Mapping[str, str] |
                Sequence[tuple[str, str]] | None = None, form: Mapping[str, str] |
                Sequence[tuple[str, str]] | None = None, body: bytes | None = None,
                initiator: str | None = None, chain: Sequence[str] = ()) -> BrowserResponse:
        """One request, no redirect followed. `initiator`: URL of the page that made it
        (None: typed into the address bar); `chain`: earlier URLs of its redirect chain
        (both decide SameSite). Cookies from the answer are stored."""
        addr = self.address(url)
        if addr is None:
            raise UnmappedHost(f"not a mapped or loopback host: {url}")
        method = method.upper()
        p = urllib.parse.urlsplit(url)
        target = (p.path or "/") + (f"?{p.query}" if p.query else "")
        hdrs: list[tuple[str, str]] = [("Host", p.netloc)] + self.default_headers
        extra = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        if form is not None:
            body = urllib.parse.urlencode(list(form.items()) if isinstance(form, Mapping)
                                          else list(form)).encode()
            hdrs.append(("Content-Type", "application/x-www-form-urlencoded"))
        if method == "POST":
            hdrs.append(("Origin", _origin(initiator) if initiator else "null"))
        sites = {_site(u) for u in ([initiator] if initiator else []) + list(chain)}
        cross_site = any(s != _site(url) for s in sites)
        sent = self._cookies_for(url, method, cross_site)
        names = {k.lower() for k, _ in extra}
        if sent and "cookie" not in names:
            hdrs.append(("Cookie", "; ".join(f"{c.name}={c.value}" for c in sent)))
        hdrs = [(k, v) for k, v in hdrs if k.lower() not in names] + extra
        if body is not None or method in ("POST", "PUT", "PATCH"):
            body = body or b""
            hdrs.append(("Content-Length", str(len(body))))
        conn = http.client.HTTPConnection(addr[0], addr[1], timeout=self.timeout)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for k, v in hdrs:
                conn.putheader(k, v)
            conn.endheaders(body)
            r = conn.getresponse()
            data = r.read()
            resp = BrowserResponse(r.status, r.reason, list(r.getheaders()), data, url, method)
        finally:
            conn.close()
        for sc in resp.header_all("Set-Cookie"):
            self.jar.set_from_header(p.hostname or "", p.path or "/", sc)
        hop = Hop(method, url, resp.status,
                  resp.location if resp.status in REDIRECTS else None, [c.name for c in sent])
        resp.hops = [hop]
        self.history.append(hop)
        return resp

    def get(self, url: str, **kw: Any) -> BrowserResponse:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> BrowserResponse:
        return self.request("POST", url, **kw)

    # --- navigation -------------------------------------------------------------------
    def follow(self, url: str, method: str = "GET", *, max_hops: int = 15,
               form: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
               body: bytes | None = None, headers: Any = None,
               initiator: str | None = None) -> BrowserResponse:
        """Request `url` and follow 301/302/303/307/308 (303, and 301/302 after a POST,
        become GET without body; 307/308 repeat method and body). Stops at a non-redirect,
        at a Location on an unmapped host (`refused` = that Location; nothing is sent there)
        or after max_hops requests (`max_hops_reached`). The last response is returned with
        `hops` = every request made (method, url, status, location, cookies_sent)."""
        hops: list[Hop] = []
        chain: list[str] = []
        for _ in range(max_hops):
            r = self.request(method, url, headers=headers, form=form, body=body,
                             initiator=initiator, chain=chain)
            hops += r.hops
            r.hops = hops
            if r.status not in REDIRECTS or r.location is None:
                return r
            nxt = r.location
            if not self.is_mapped(nxt):
                r.refused = nxt
                return r
            if r.status == 303 or (r.status in (301, 302) and method == "POST"):
                method, form, body = "GET", None, None
                headers = [(k, v) for k, v in (headers.items() if isinstance(headers, Mapping)
                                               else headers or [])
                           if k.lower() not in ("content-type", "content-length")]
            chain.append(url)
            url = nxt
        r.max_hops_reached = True
        return r

    def submit(self, response: BrowserResponse, form: Form,
               overrides: Mapping[str, str] | None = None, max_hops: int = 15) -> BrowserResponse:
        """Submit `form` of the page `response` (fields replaced by `overrides`), then follow."""
        fields = [(k, v) for k, v in form.fields if not overrides or k not in overrides]
        fields += list((overrides or {}).items())
        if form.method == "POST":
            return self.follow(form.action, "POST", form=fields, initiator=response.url,
                               max_hops=max_hops)
        # a GET form replaces the action's query (as browsers do)
        url = form.action.split("#")[0].split("?")[0] + "?" + urllib.parse.urlencode(fields)
        return self.follow(url, initiator=response.url, max_hops=max_hops)

    def login_form(self, response: BrowserResponse) -> Form | None:
        """The page's login form: the first form with a password input (None if none)."""
        if response.status != 200:
            return None
        for f in response.forms():
            if f.has_password:
                return f
        return None

    def submit_login(self, response: BrowserResponse, username: str, password: str,
                     max_hops: int = 15) -> BrowserResponse:
        """Fill `username` and `password` into the page's login form, submit, follow."""
        f = self.login_form(response)
        if f is None:
            raise AssertionError(f"no login form in {response!r}")
        user_field = next((k for k, t in f.input_types.items()
                           if t in ("text", "email") and k in ("username", "login", "email")),
                          "username")
        pw_field = next(k for k, t in f.input_types.items() if t == "password")
        return self.submit(response, f, {user_field: username, pw_field: password}, max_hops)

    def submit_auto_form(self, response: BrowserResponse, max_hops: int = 15) -> BrowserResponse:
        """What a browser's script does on a form_post page: POST the hidden inputs of its
        form to the form's action (application/x-www-form-urlencoded), then follow."""
        f = auto_form(response)
        if f is None:
            raise AssertionError(f"not a self-submitting form page: {response!r}")
        return self.submit(response, f, None, max_hops)

    def browse(self, url: str, *, max_hops: int = 15, max_forms: int = 4,
               credentials: tuple[str, str] | None = None, **kw: Any) -> BrowserResponse:
        """follow(url), then act like a user with JavaScript: submit self-submitting forms
        and, with `credentials`, a login form (once) — up to max_forms submissions. The
        returned response's `hops` lists every request of the whole walk."""
        r = self.follow(url, max_hops=max_hops, **kw)
        hops = list(r.hops)
        logged_in = False
        for _ in range(max_forms):
            if r.refused:
                break
            if credentials and not logged_in and self.login_form(r) is not None:
                r = self.submit_login(r, credentials[0], credentials[1], max_hops)
                logged_in = True
            elif auto_form(r) is not None:
                r = self.submit_auto_form(r, max_hops)
            else:
                break
            hops += r.hops
            r.hops = hops
        return r

    def login(self, start_url: str, username: str, password: str, *,
              max_hops: int = 15) -> BrowserResponse:
        """Follow start_url; on the IdP's login form submit the credentials; follow on;
        submit a form_post page if one comes. Returns the final response (its `hops`: every
        request; `refused`: where it stopped on an unmapped host). If the IdP already has a
        session (SSO) no form is shown and none is submitted."""
        return self.browse(start_url, max_hops=max_hops, credentials=(username, password))

    def logout(self, url: str, *, max_hops: int = 15) -> BrowserResponse:
        """Follow an end-session URL, submitting the test IdP's self-submitting logout form."""
        return self.browse(url, max_hops=max_hops)


APP_URL = "http://app.test"


def app_browser(port: int) -> Browser:
    """A browser whose `app.test` is the proxy listening on loopback `port` (the test IdP's
    relying-party clients are registered for http://app.test/...)."""
    return Browser(hosts={"app.test": ("127.0.0.1", port)})
