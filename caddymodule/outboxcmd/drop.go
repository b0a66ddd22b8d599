package outboxcmd

import "github.com/spf13/cobra"

func newDropCommand() *cobra.Command {
	return &cobra.Command{Use: "drop <n>", Short: "Removes a queued change: the app never gets it", RunE: runE(taskAction("drop", "change %s of %s is dropped\n"))}
}
