package store

import "fmt"

// Action is a change an authorised person asks for.
type Action string

// The actions on an existing connection.
const (
	ActionEnable  Action = "enable"
	ActionDisable Action = "disable"
	ActionDelete  Action = "delete"
)

// Next is the connection state machine, the only place that decides which
// status may follow which:
//
//	active   --disable--> disabled
//	disabled --enable-->  active
//	active | disabled --delete--> deleted   (terminal)
//
// Repeating an action is idempotent: changed is false and the status stays.
// Enabling or disabling a deleted connection is ErrDeleted; deleting it again
// is an idempotent no-op, so a retried DELETE does not fail.
func Next(from Status, action Action) (to Status, changed bool, err error) {
	if !from.Valid() {
		return from, false, fmt.Errorf("unknown status %q", from)
	}
	switch action {
	case ActionEnable, ActionDisable:
		if from == StatusDeleted {
			return from, false, ErrDeleted
		}
		to = StatusActive
		if action == ActionDisable {
			to = StatusDisabled
		}
	case ActionDelete:
		to = StatusDeleted
	default:
		return from, false, fmt.Errorf("unknown action %q", action)
	}
	return to, to != from, nil
}
