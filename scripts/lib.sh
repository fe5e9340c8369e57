# shellcheck shell=bash
# Helpers shared by the Stasis set-up scripts. Source it, don't run it.
#
# Nothing here names a package mirror: the Debian archive URI is always read
# from the machine's own apt configuration at run time.

STASIS_LOG_TAG=${STASIS_LOG_TAG:-stasis}

log() { printf '[%s] %s\n' "$STASIS_LOG_TAG" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$STASIS_LOG_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$STASIS_LOG_TAG" "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
}

# Codename of the host release (bookworm on Debian 12).
host_codename() {
    local VERSION_CODENAME=""
    # shellcheck disable=SC1091
    [ -r /etc/os-release ] && . /etc/os-release
    printf '%s\n' "${VERSION_CODENAME:-bookworm}"
}

# Print the main Debian archive URI the machine's apt is configured with
# (no trailing slash), e.g. the URI of the "bookworm" suite, never the
# -security or -updates one. Uses apt's own parser (`apt-get indextargets`),
# so both one-line sources.list and deb822 *.sources files are understood.
# Prints nothing and returns 1 when none is configured.
# shellcheck disable=SC2016  # $(...) below is apt's --format syntax
debian_archive_uri() {
    local codename uri
    codename=$(host_codename)
    uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' \
            'Created-By: Packages' 2>/dev/null |
          awk -v c="$codename" '
              $2 == c && $1 !~ /security/ { print $1; exit }')
    if [ -z "$uri" ]; then
        # Fallback: any plain suite (no "-something") that is not security.
        uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' \
                'Created-By: Packages' 2>/dev/null |
              awk '$2 !~ /-/ && $1 !~ /security/ { print $1; exit }')
    fi
    [ -n "$uri" ] || return 1
    printf '%s\n' "${uri%/}"
}

# Echo the packages from "$@" that are not installed.
missing_packages() {
    local p st
    for p in "$@"; do
        st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        case "$st" in
            ii*) ;;
            *) printf '%s\n' "$p" ;;
        esac
    done
}

# Install the packages from "$@" that are missing (checked with dpkg-query
# first), so a fully provisioned host never touches apt or the network.
apt_install_missing() {
    local missing aptlog
    missing=$(missing_packages "$@" | tr '\n' ' ')
    missing=${missing% }
    [ -n "$missing" ] || return 0
    log "apt: installing missing packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    aptlog=$(mktemp /tmp/stasis-apt.XXXXXX.log)
    apt-get update -q >"$aptlog" 2>&1 ||
        { tail -n 30 "$aptlog" >&2; die "apt-get update failed (log: $aptlog)"; }
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >>"$aptlog" 2>&1 ||
        { tail -n 30 "$aptlog" >&2; die "apt-get install $missing failed (log: $aptlog)"; }
    rm -f "$aptlog"
}

# version_ge A B: true when version A >= version B.
version_ge() {
    [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}
