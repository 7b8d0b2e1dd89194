package control

import (
	"runtime"
	"strings"
)

// HoldPeopleTurnsForTest takes every turn of people's change streams of c
// (see eventStream.turn) until release is called: meanwhile their streams
// write nothing, and read no change.
func HoldPeopleTurnsForTest(c *Control) (release func()) {
	turns := c.shared.peopleTurns
	for range cap(turns) {
		turns <- struct{}{}
	}
	return func() {
		for range cap(turns) {
			<-turns
		}
	}
}

// StreamsWaitingForTurnForTest counts the change streams of the process
// that wait for their turn to write, having settled where they start.
func StreamsWaitingForTurnForTest() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "control.(*eventStream).turn(")
		}
		buf = make([]byte, 2*len(buf))
	}
}
