package model

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types nftpolicy reports on the tier policies' status.
const (
	// ConditionValid is False when part of the policy could not be enforced
	// as written; the message says what and how it was handled.
	ConditionValid = "nftpolicy.io/Valid"
	// ConditionUniquePriority is False when another policy of the same tier
	// has the same priority; the message gives the order nftpolicy uses.
	ConditionUniquePriority = "nftpolicy.io/UniquePriority"
)

// maxMessage is the API's limit on a condition message.
const maxMessage = 32768

// TierConditions returns the conditions to report on each tier policy, by
// Key. LastTransitionTime and ObservedGeneration are left for the writer.
func (c *Cluster) TierConditions() map[string][]metav1.Condition {
	out := map[string][]metav1.Condition{}
	for _, t := range []Tier{TierAdmin, TierBaseline} {
		policies := c.SortedTier(t)
		byPriority := map[int32][]string{}
		for _, p := range policies {
			byPriority[p.Priority] = append(byPriority[p.Priority], p.Key())
		}
		for _, p := range policies {
			valid := metav1.Condition{Type: ConditionValid, Status: metav1.ConditionTrue, Reason: "Valid", Message: "every field is enforced"}
			if len(p.Problems) > 0 {
				valid.Status, valid.Reason = metav1.ConditionFalse, "InvalidFields"
				valid.Message = truncateMessage(strings.Join(p.Problems, "; "))
			}
			unique := metav1.Condition{Type: ConditionUniquePriority, Status: metav1.ConditionTrue, Reason: "UniquePriority",
				Message: fmt.Sprintf("no other %s tier policy has priority %d", t, p.Priority)}
			if same := byPriority[p.Priority]; len(same) > 1 {
				unique.Status, unique.Reason = metav1.ConditionFalse, "SharedPriority"
				unique.Message = truncateMessage(fmt.Sprintf("%d %s tier policies share priority %d; nftpolicy evaluates them in this order: %s",
					len(same), t, p.Priority, strings.Join(same, ", ")))
			}
			out[p.Key()] = []metav1.Condition{valid, unique}
		}
	}
	return out
}

func truncateMessage(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}
