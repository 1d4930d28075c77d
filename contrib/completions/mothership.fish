# fish completion for mothership(1): commands, their options, and the names
# of the manifest's ships, bays and @tags, which `mothership clearance
# --names` prints offline.

# The manifest's names, one a line, for the -c given on the command line.
function __mothership_names
    set -l tokens (commandline -opc)
    set -l args clearance --names
    for i in (seq 2 (count $tokens))
        switch $tokens[$i]
            case -c --config
                set -l j (math $i + 1)
                if test $j -le (count $tokens)
                    set args $args -c $tokens[$j]
                end
            case '--config=*'
                set args $args -c (string replace -- --config= '' $tokens[$i])
        end
    end
    # stdin is the terminal: never let a manifest read from it ("-c -")
    command $tokens[1] $args </dev/null 2>/dev/null
end

function __mothership_plain_names
    __mothership_names | string match -v -- '@*'
end

# --only/--except take a comma-separated list of tags
function __mothership_tags
    set -l cur (commandline -ct | string replace -r -- '^--(only|except)=' '')
    set -l done_part (string match -r -- '^.*,' $cur)
    for tag in (__mothership_names | string match -- '@*' | string sub -s 2)
        echo $done_part$tag
    end
end

set -l cmds run init clearance preflight chart status restart stop start signal logs reload drain help
set -l fleet status restart stop start signal logs reload drain

complete -c mothership -f
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a run -d 'launch the fleet (default)'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a init -d 'write a commented starter manifest'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a clearance -d 'validate the manifest offline'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a preflight -d 'validate and check every uplink'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a chart -d 'where each request goes, per bind'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a status -d 'every ship and bay of the running fleet'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a restart -d 'restart entries'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a stop -d 'stop entries until started again'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a start -d 'start stopped entries'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a signal -d 'send a signal to an entry'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a logs -d 'recent output of one entry or all'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a reload -d "apply the manifest's changes"
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a drain -d 'stop accepting requests, finish those in flight'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -a help -d 'the help of one command'

# every command
complete -c mothership -s c -l config -r -F -d 'manifest to use'
complete -c mothership -s h -l help -d 'show the help'
complete -c mothership -n "not __fish_seen_subcommand_from $cmds" -s V -l version -d 'print the version'

complete -c mothership -n '__fish_seen_subcommand_from run' -l only -x -a '(__mothership_tags)' -d 'only entries with these tags'
complete -c mothership -n '__fish_seen_subcommand_from run' -l except -x -a '(__mothership_tags)' -d 'leave out entries with these tags'
complete -c mothership -n '__fish_seen_subcommand_from run' -l tui -d 'show the dashboard'
complete -c mothership -n '__fish_seen_subcommand_from run' -l log-format -x -a 'text json' -d 'log format'
complete -c mothership -n '__fish_seen_subcommand_from init' -s f -l force -d 'overwrite an existing file'
complete -c mothership -n '__fish_seen_subcommand_from init' -F
complete -c mothership -n '__fish_seen_subcommand_from clearance' -l names -d 'print only the names and @tags'
complete -c mothership -n '__fish_seen_subcommand_from chart' -l json -d 'JSON output'

# the fleet commands
complete -c mothership -n "__fish_seen_subcommand_from $fleet" -l socket -r -F -d 'the control socket'
complete -c mothership -n "__fish_seen_subcommand_from $fleet" -l json -d 'JSON output'
complete -c mothership -n '__fish_seen_subcommand_from restart stop start' -x -a '(__mothership_names)'
complete -c mothership -n '__fish_seen_subcommand_from signal logs' -x -a '(__mothership_plain_names)'
complete -c mothership -n '__fish_seen_subcommand_from signal' -x -a 'HUP INT QUIT TERM KILL USR1 USR2 WINCH CONT STOP TSTP'
complete -c mothership -n '__fish_seen_subcommand_from logs' -s n -x -d 'the last N lines'
complete -c mothership -n '__fish_seen_subcommand_from logs' -s f -l follow -d 'then follow new lines'
complete -c mothership -n '__fish_seen_subcommand_from reload' -l check -d 'print the plan, change nothing'
complete -c mothership -n '__fish_seen_subcommand_from help' -x -a "$cmds"
