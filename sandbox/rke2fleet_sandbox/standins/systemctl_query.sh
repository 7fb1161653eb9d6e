# Sourced by the `systemctl` shim: answers the query verbs (is-active, is-failed, is-enabled, show)
# in the shell and exits; anything else falls through to systemctl.py. The real systemctl is a
# compiled binary (a query costs it ~2 ms of CPU); a Python start costs ~15 ms, and these verbs run
# in every reconcile pass and every readiness poll, on every host of a fleet sharing the machine.
# Same answers as systemctl_cli/unitstate: tests run each query through both.
# RKE2FLEET_SYSTEMCTL_PYTHON=1 sends every call to Python (the tests' other half).

_q_units=${RKE2FLEET_UNITS_DIR:-/run/rke2fleet/units}
_q_path=${RKE2FLEET_UNIT_PATH:-/etc/systemd/system:/usr/local/lib/systemd/system:/lib/systemd/system}

# unitstate.read_status: sets _q_state _q_sub _q_main _q_exits.
_q_status() {
    _q_state= _q_sub= _q_main=0 _q_exits=0 _q_pending= _q_since=0 _q_sup=
    if [ -f "$_q_units/$1/status.txt" ]; then
        while IFS='=' read -r _k _v; do
            case $_k in
                state) _q_state=$_v ;;
                substate) _q_sub=$_v ;;
                mainPid) _q_main=$_v ;;
                exits) _q_exits=$_v ;;
                pending) _q_pending=$_v ;;
                since) _q_since=$_v ;;
                supervisorPid) _q_sup=$_v ;;
            esac
        done <"$_q_units/$1/status.txt"
    fi
    if [ -z "$_q_state" ]; then
        _q_state=inactive _q_sub=dead _q_main=0 _q_exits=0
        return 0
    fi
    if [ "$_q_pending" = 1 ] && [ $(($(date +%s) - ${_q_since%.*})) -lt 10 ]; then
        return 0 # a supervisor being spawned: PENDING_GRACE_SECONDS
    fi
    [ "$_q_sub" = exited ] && return 0 # a oneshot unit that remains active: no process to look for
    case $_q_state in
        active | activating | deactivating)
            # a running state whose supervisor is gone reads as failed (like a crash)
            if [ -z "$_q_sup" ] || [ "$_q_sup" = 0 ] || ! grep -qs __supervise "/proc/$_q_sup/cmdline"; then
                _q_state=failed _q_sub=failed
            fi
            ;;
    esac
    return 0
}

_q_unit_file() {
    _q_file=
    _q_ifs=$IFS
    IFS=:
    for _d in $_q_path; do
        if [ -f "$_d/$1" ]; then
            _q_file="$_d/$1"
            break
        fi
    done
    IFS=$_q_ifs
    [ -n "$_q_file" ]
}

_q_show() { # unit, then the wanted properties as ",A,B," (",," for all)
    _q_unit_file "$1" && _q_load=loaded || _q_load=not-found
    _q_ufs=
    if [ "$_q_load" = loaded ]; then
        [ -e "$_q_units/$1/enabled" ] && _q_ufs=enabled || _q_ufs=disabled
    fi
    _q_nr=$_q_exits
    if [ "$_q_sub" = auto-restart ] && [ "$_q_exits" -gt 0 ]; then _q_nr=$((_q_exits - 1)); fi
    for _p in MainPID NRestarts LoadState ActiveState SubState UnitFileState; do
        case $2 in ,,|*",$_p,"*) ;; *) continue ;; esac
        case $_p in
            MainPID) _v=$_q_main ;;
            NRestarts) _v=$_q_nr ;;
            LoadState) _v=$_q_load ;;
            ActiveState) _v=$_q_state ;;
            SubState) _v=$_q_sub ;;
            UnitFileState) _v=$_q_ufs ;;
        esac
        if [ -n "$_q_value" ]; then printf '%s\n' "$_v"; else printf '%s=%s\n' "$_p" "$_v"; fi
    done
}

# 0 with the exit code in _q_rc when answered here; 1 to fall through to Python.
_q_main() {
    [ "${RKE2FLEET_SYSTEMCTL_PYTHON:-}" = 1 ] && return 1
    _q_verb= _q_quiet= _q_value= _q_props=, _q_list=
    while [ $# -gt 0 ]; do
        case $1 in
            -p | --property)
                if [ $# -ge 2 ]; then
                    _q_props="$_q_props$2,"
                    shift
                fi
                ;;
            --property=*) _q_props="$_q_props${1#--property=}," ;;
            --*) case $1 in --quiet) _q_quiet=1 ;; --value) _q_value=1 ;; esac ;;
            -p*) _q_props="$_q_props${1#-p}," ;;
            -q) _q_quiet=1 ;;
            -*) ;;
            *)
                case $1 in *[!A-Za-z0-9@._:-]* | "") return 1 ;; esac # not a plain unit name: Python
                if [ -z "$_q_verb" ]; then _q_verb=$1; else _q_list="$_q_list $1"; fi
                ;;
        esac
        shift
    done
    case $_q_verb in is-active | is-failed | is-enabled | show) ;; *) return 1 ;; esac
    # Empty items (",,", a trailing comma) are dropped, as systemctl_cli.parse_args does.
    while :; do
        case $_q_props in *,,*) _q_props="${_q_props%%,,*},${_q_props#*,,}" ;; *) break ;; esac
    done
    [ "$_q_props" = , ] && _q_props=,,
    _q_units_list=
    for _u in $_q_list; do
        case $_u in *.*) ;; *) _u="$_u.service" ;; esac
        # a unit started by a stand-in from before status.txt: Python reads its status.json
        [ -f "$_q_units/$_u/status.txt" ] || [ ! -e "$_q_units/$_u/status.json" ] || return 1
        _q_units_list="$_q_units_list $_u"
    done
    _q_rc=0 _q_n=0
    for _u in $_q_units_list; do
        case $_q_verb in
            is-active | is-failed)
                _q_status "$_u"
                [ -n "$_q_quiet" ] || printf '%s\n' "$_q_state"
                if [ "$_q_verb" = is-active ]; then
                    [ "$_q_state" = active ] || _q_rc=3
                elif [ "$_q_state" != failed ] && [ "$_q_rc" -lt 1 ]; then
                    _q_rc=1
                fi
                ;;
            is-enabled)
                if ! _q_unit_file "$_u"; then
                    [ -n "$_q_quiet" ] || echo "Failed to get unit file state for $_u: No such file or directory" >&2
                    [ "$_q_rc" -ge 1 ] || _q_rc=1
                elif [ -e "$_q_units/$_u/enabled" ]; then
                    [ -n "$_q_quiet" ] || echo enabled
                else
                    [ -n "$_q_quiet" ] || echo disabled
                    [ "$_q_rc" -ge 1 ] || _q_rc=1
                fi
                ;;
            show)
                _q_status "$_u"
                [ "$_q_n" = 0 ] || echo # systemd separates the units' blocks with an empty line
                _q_show "$_u" "$_q_props"
                ;;
        esac
        _q_n=$((_q_n + 1))
    done
    return 0
}

if _q_main "$@"; then
    exit "$_q_rc"
fi
