# bash completion for mothership(1)                        -*- shell-script -*-
# Commands, their options, and the names of the manifest's ships, bays and
# @tags, which `mothership clearance --names` prints offline.

# The manifest's names, one a line; $1: the manifest given with -c, if any.
_mothership_names()
{
    local -a args=(clearance --names)
    local m=$1
    # the word as typed: its ~/ is not expanded yet
    [[ $m == "~/"* ]] && m=$HOME/${m#"~/"}
    [[ -n $m ]] && args+=(-c "$m")
    # stdin is the terminal: never let a manifest read from it ("-c -")
    "${COMP_WORDS[0]}" "${args[@]}" </dev/null 2>/dev/null
}

# COMPREPLY from the words on stdin (one a line) that start with $2, each
# quoted for the command line, after the prefix $1 (as typed). Not compgen -W: it
# would split a word at its blanks, glob it, and expand $(...) in it, and a
# manifest's tags are any strings.
_mothership_reply()
{
    local w q plain='^[A-Za-z0-9_@,.:/=+-][A-Za-z0-9_@#,.:/=+-]*$'
    COMPREPLY=()
    while IFS= read -r w; do
        [[ -n $w && $w == "$2"* ]] || continue
        q=$w
        [[ $q =~ $plain ]] || printf -v q '%q' "$q"
        COMPREPLY+=("$1$q")
    done
}

_mothership()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local commands="run init clearance preflight chart status restart stop start signal logs reload drain help"
    local fleet_opts="--config -c --socket --json --help -h"
    local cmd="" manifest="" w i nargs=0
    COMPREPLY=()

    # the command, the manifest and how many arguments the command has so far
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
            -c | --config) manifest=${COMP_WORDS[i + 1]}; ((i++)) ;;
            --config=*) manifest=${w#--config=} ;;
            --only | --except | --log-format | --socket | -n) ((i++)) ;;
            -*) ;;
            *) if [[ -z $cmd ]]; then cmd=$w; else ((nargs++)); fi ;;
        esac
    done

    case $prev in
        -c | --config)
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -X '!*.toml' -- "$cur") $(compgen -d -- "$cur"))
            return ;;
        --socket)
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
        --log-format)
            COMPREPLY=($(compgen -W "text json" -- "$cur"))
            return ;;
        -n)
            return ;;
        --only | --except)
            # a comma-separated list: complete its last element
            local done_part=""
            [[ $cur == *,* ]] && done_part=${cur%,*},
            _mothership_reply "$done_part" "${cur##*,}" < <(_mothership_names "$manifest" | sed -n 's/^@//p')
            compopt -o nospace 2>/dev/null
            return ;;
    esac

    if [[ $cur == -* ]]; then
        local opts
        case $cmd in
            "") opts="--config -c --help -h --version -V" ;;
            run) opts="--config -c --only --except --tui --log-format --help -h" ;;
            init) opts="--config -c --force -f --help -h" ;;
            clearance) opts="--config -c --names --help -h" ;;
            preflight) opts="--config -c --help -h" ;;
            chart) opts="--config -c --json --help -h" ;;
            status | restart | stop | start | signal | drain) opts=$fleet_opts ;;
            logs) opts="$fleet_opts -n --follow -f" ;;
            reload) opts="$fleet_opts --check" ;;
            help) opts="" ;;
        esac
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi

    case $cmd in
        "")
            COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
        restart | stop | start)
            _mothership_reply "" "$cur" < <(_mothership_names "$manifest") ;;
        logs)
            ((nargs == 0)) && _mothership_reply "" "$cur" < <(_mothership_names "$manifest" | grep -v '^@') ;;
        signal)
            if ((nargs == 0)); then
                _mothership_reply "" "$cur" < <(_mothership_names "$manifest" | grep -v '^@')
            elif ((nargs == 1)); then
                COMPREPLY=($(compgen -W "HUP INT QUIT TERM KILL USR1 USR2 WINCH CONT STOP TSTP" -- "$cur"))
            fi ;;
        init)
            compopt -o filenames 2>/dev/null
            ((nargs == 0)) && COMPREPLY=($(compgen -f -- "$cur")) ;;
        help)
            ((nargs == 0)) && COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
    esac
}
complete -F _mothership mothership
